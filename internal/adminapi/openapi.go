package adminapi

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/operator"
	"github.com/mqtt-authproxy/mqtt-authproxy/authstore/passwords"
	"github.com/mqtt-authproxy/mqtt-authproxy/policy"
)

// OpenAPI is the API's OpenAPI 3 document, served at
// /api/v1/openapi.json; a test validates recorded answers against it.
//
//go:embed openapi.json
var OpenAPI []byte

func (a *API) openAPI(*request) (int, any, error) {
	return http.StatusOK, json.RawMessage(OpenAPI), nil
}

// isInvalid: the operator's input cannot be stored.
func isInvalid(err error) bool {
	return errors.Is(err, operator.ErrInvalid) || errors.Is(err, policy.ErrMalformedRule) || errors.Is(err, passwords.ErrMalformedHash)
}
