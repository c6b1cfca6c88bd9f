package config

import (
	"errors"
	"io/fs"
	"testing"
)

func TestErrorsNameFileAndKey(t *testing.T) {
	var errs Errors
	if errs.Join() != nil {
		t.Fatal("no errors joined to non-nil")
	}
	errs.Add("routes[0].service", "%q needs a port", "tcp://nas")
	errs = append(errs, fs.ErrNotExist)
	err := InFile("agent.yaml", errs.Join())
	want := "agent.yaml: routes[0].service: \"tcp://nas\" needs a port\nagent.yaml: file does not exist"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != "agent.yaml" || fe.Key != "routes[0].service" {
		t.Errorf("FieldError %+v", fe)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Error("InFile hides the wrapped error")
	}
	if InFile("agent.yaml", nil) != nil {
		t.Error("InFile(nil) is not nil")
	}
}
