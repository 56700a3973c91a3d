package grpcapi

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
)

// TestEveryMethodDeclaresARole: a method added to the API without a role
// would be refused to everyone; this test makes the omission loud.
func TestEveryMethodDeclaresARole(t *testing.T) {
	for _, sd := range []grpc.ServiceDesc{sfv1.SecondFactorService_ServiceDesc, sfv1.AdminService_ServiceDesc} {
		for _, m := range sd.Methods {
			name := "/" + sd.ServiceName + "/" + m.MethodName
			if _, ok := methodRoles[name]; !ok {
				t.Errorf("%s declares no role", name)
			}
		}
	}
}

func TestUndeclaredMethodRefused(t *testing.T) {
	cs := Callers{}
	_, err := cs.authorize(context.Background(), "/secondfactor.v1.SecondFactorService/NotInTheTable")
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("undeclared method: %v, want PermissionDenied", err)
	}
}
