// Package awssigv4 is AWS Signature Version 4 request signing, for APIs
// behind AWS: API Gateway with IAM authorisation, OpenSearch, S3, any
// AWS service's HTTP API. It signs with github.com/aws/smithy-go's
// aws-http-auth, AWS's own small signer, over the body as sent, on every
// attempt (a retried request gets a fresh X-Amz-Date).
package awssigv4

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/smithy-go/aws-http-auth/credentials"
	"github.com/aws/smithy-go/aws-http-auth/sigv4"
	v4 "github.com/aws/smithy-go/aws-http-auth/v4"

	"github.com/ferry-dev/ferry/internal/auth"
	"github.com/ferry-dev/ferry/internal/spec"
)

func init() {
	auth.Register("aws_sigv4", "AWS Signature Version 4: every request signed with an access key, for APIs behind AWS.", New)
}

// Config is the aws_sigv4 scheme's auth section.
type Config struct {
	// Region and Service name the signing scope (us-east-1, execute-api).
	Region  string `yaml:"region" required:"true" min:"1" def:"template" doc:"The AWS region, such as eu-west-1. Template (config)."`
	Service string `yaml:"service" required:"true" min:"1" doc:"The signing name of the service: execute-api (API Gateway), es (OpenSearch), s3…"`
	// AccessKeyID, SecretAccessKey and SessionToken are the credentials.
	AccessKeyID     string `yaml:"access_key_id" required:"true" def:"template" doc:"The access key id. Template (config)."`
	SecretAccessKey string `yaml:"secret_access_key" required:"true" def:"template" doc:"The secret access key: a secret config parameter."`
	SessionToken    string `yaml:"session_token,omitempty" def:"template" doc:"The session token of temporary credentials: a secret config parameter."`
	// PayloadHeader adds X-Amz-Content-Sha256 (S3 needs it).
	PayloadHeader bool `yaml:"payload_header,omitempty" doc:"Send X-Amz-Content-Sha256 (S3 requires it)."`
}

// Validate checks the templates and that credentials are secrets.
func (c *Config) Validate(chk *spec.Checker) {
	chk.Template([]string{"region"}, c.Region, spec.VarConfig)
	chk.Template([]string{"access_key_id"}, c.AccessKeyID, spec.VarConfig)
	chk.SecretTemplate([]string{"secret_access_key"}, c.SecretAccessKey)
	if c.SessionToken != "" {
		chk.SecretTemplate([]string{"session_token"}, c.SessionToken)
	}
}

// Signer signs requests.
type Signer struct {
	signer  *sigv4.Signer
	creds   credentials.Credentials
	region  string
	service string
	payload bool
	now     func() time.Time
}

// New returns the signer.
func New(c *Config, env auth.Env) (auth.Authenticator, []string, error) {
	s := &Signer{service: c.Service, payload: c.PayloadHeader, now: time.Now}
	var err error
	if s.region, err = env.Eval(c.Region); err != nil {
		return nil, nil, fmt.Errorf("auth.region: %w", err)
	}
	if s.creds.AccessKeyID, err = env.Eval(c.AccessKeyID); err != nil {
		return nil, nil, fmt.Errorf("auth.access_key_id: %w", err)
	}
	if s.creds.SecretAccessKey, err = env.Eval(c.SecretAccessKey); err != nil {
		return nil, nil, fmt.Errorf("auth.secret_access_key: %w", err)
	}
	if s.creds.SessionToken, err = env.Eval(c.SessionToken); err != nil {
		return nil, nil, fmt.Errorf("auth.session_token: %w", err)
	}
	if s.region == "" || s.creds.AccessKeyID == "" || s.creds.SecretAccessKey == "" {
		return nil, nil, errors.New("auth: aws_sigv4 needs region, access_key_id and secret_access_key")
	}
	s.signer = sigv4.New(func(o *v4.SignerOptions) { o.AddPayloadHashHeader = s.payload })
	return s, []string{s.creds.SecretAccessKey, s.creds.SessionToken}, nil
}

// Apply signs the request over its body.
func (s *Signer) Apply(_ context.Context, req *http.Request) error {
	return s.sign(req, s.now())
}

func (s *Signer) sign(req *http.Request, at time.Time) error {
	h := sha256.New()
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return fmt.Errorf("auth: aws_sigv4: read the body to sign: %w", err)
		}
		_, err = io.Copy(h, body)
		body.Close()
		if err != nil {
			return fmt.Errorf("auth: aws_sigv4: read the body to sign: %w", err)
		}
	}
	if req.Host == "" {
		req.Host = req.URL.Host
	}
	return s.signer.SignRequest(&sigv4.SignRequestInput{
		Request:     req,
		PayloadHash: h.Sum(nil),
		Credentials: s.creds,
		Service:     s.service,
		Region:      s.region,
		Time:        at,
	})
}
