// Package s3test starts a real S3 server for tests: versitygw (posix
// backend, with versioning and Object Lock) built from the version pinned in
// tools/s3, or MinIO when asked. Only tests import it.
//
// Environment:
//
//	CUSTODY_TEST_VERSITYGW=/path/to/versitygw   use this binary instead of building one
//	CUSTODY_TEST_S3=minio                       run MinIO instead of versitygw; needs
//	CUSTODY_TEST_MINIO=/path/to/minio           a MinIO server binary (AGPL: only ever run, never imported)
package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// Region is the region every server here answers for.
const Region = "us-east-1"

// Server is a running S3 server, stopped when the test that started it ends.
type Server struct {
	Endpoint  string // http://127.0.0.1:<port>
	AccessKey string // the root account's, made up for this server
	SecretKey string
	Kind      string // "versitygw" or "minio"
	// DataDir is where versitygw keeps object k of bucket b: the file
	// DataDir/b/k, for tests that damage stored bytes. Empty for MinIO,
	// whose layout is its own.
	DataDir string
}

// BucketOptions says how Server.Bucket creates a bucket.
type BucketOptions struct {
	Versioning bool
	ObjectLock bool // implies versioning, as on AWS
}

// kind describes how to run one S3 server implementation.
type kind struct {
	name   string
	binary func(t testing.TB) string
	// args returns the command line for a server on addr storing in dir.
	args    func(addr, dir string) ([]string, error)
	env     func(access, secret string) []string
	health  string // path that answers 200 once the server is up
	dataDir string // folder below the server's that holds buckets as folders, if any
}

var versitygw = kind{
	name:   "versitygw",
	binary: Binary,
	args: func(addr, dir string) ([]string, error) {
		// versitygw refuses a versioning folder inside the data folder.
		data, versions := filepath.Join(dir, "data"), filepath.Join(dir, "versions")
		for _, d := range []string{data, versions} {
			if err := os.Mkdir(d, 0o700); err != nil {
				return nil, err
			}
		}
		return []string{"--port", addr, "--health", "/health", "--quiet",
			"posix", "--versioning-dir", versions, data}, nil
	},
	// Through the environment, not the command line, where ps shows them.
	env: func(access, secret string) []string {
		return []string{"ROOT_ACCESS_KEY=" + access, "ROOT_SECRET_KEY=" + secret}
	},
	health:  "/health",
	dataDir: "data",
}

var minio = kind{
	name: "minio",
	binary: func(t testing.TB) string {
		p := os.Getenv("CUSTODY_TEST_MINIO")
		if p == "" {
			t.Fatal("CUSTODY_TEST_S3=minio needs CUSTODY_TEST_MINIO=/path/to/minio")
		}
		return p
	},
	args: func(addr, dir string) ([]string, error) {
		return []string{"server", "--quiet", "--address", addr, filepath.Join(dir, "data")}, nil
	},
	env: func(access, secret string) []string {
		return []string{"MINIO_ROOT_USER=" + access, "MINIO_ROOT_PASSWORD=" + secret, "MINIO_BROWSER=off"}
	},
	health: "/minio/health/live",
}

// Start runs a fresh S3 server with an empty data folder on a free port of
// 127.0.0.1 and root credentials made up for it. It stops the server when
// the test ends and, if the test failed, logs the server's output.
func Start(t testing.TB) *Server {
	t.Helper()
	k := versitygw
	switch s := os.Getenv("CUSTODY_TEST_S3"); s {
	case "", "versitygw":
	case "minio":
		k = minio
	default:
		t.Fatalf("CUSTODY_TEST_S3=%q: want versitygw or minio", s)
	}
	bin := k.binary(t)
	var lastErr error
	for range 3 { // another process may take the free port before the server does
		s, err := start(t, k, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("start %s: %v", k.name, lastErr)
	return nil
}

func start(t testing.TB, k kind, bin string) (*Server, error) {
	t.Helper()
	dir := t.TempDir()
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args, err := k.args(addr, dir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  "http://" + addr,
		AccessKey: rand.Text()[:20],
		SecretKey: rand.Text() + rand.Text(),
		Kind:      k.name,
	}
	if k.dataDir != "" {
		s.DataDir = filepath.Join(dir, k.dataDir)
	}
	logPath := filepath.Join(dir, k.name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), k.env(s.AccessKey, s.SecretKey)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{}) // closed once the process has exited
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		if cmd.Process.Signal(os.Interrupt) == nil {
			select {
			case <-exited:
				return
			case <-time.After(5 * time.Second):
			}
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	if err := waitHealthy(s.Endpoint+k.health, exited, &waitErr); err != nil {
		stop()
		out, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%s %s: %w\n%s", bin, strings.Join(args, " "), err, tail(out, 16<<10))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			out, _ := os.ReadFile(logPath)
			t.Logf("%s log (%s):\n%s", k.name, logPath, tail(out, 32<<10))
		}
	})
	return s, nil
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitHealthy polls url until it answers 200, the process exits (and
// *waitErr says why), or 30 s pass.
func waitHealthy(url string, exited <-chan struct{}, waitErr *error) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for delay := 10 * time.Millisecond; time.Now().Before(deadline); delay = min(2*delay, 200*time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited before it answered: %v", *waitErr)
		case <-time.After(delay):
		}
	}
	return errors.New("the server did not answer within 30 s")
}

// Client returns an S3 client for the server's root account: path-style,
// region us-east-1, static credentials.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// Bucket creates a bucket and returns its name; an empty name picks a new
// one. ObjectLock creates it with Object Lock enabled (and so versioning);
// Versioning turns versioning on.
func (s *Server) Bucket(t testing.TB, name string, opts BucketOptions) string {
	t.Helper()
	if name == "" {
		name = "custody-" + strings.ToLower(rand.Text())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client(t)
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if opts.ObjectLock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := c.CreateBucket(ctx, in); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	if opts.Versioning {
		_, err := c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket:                  aws.String(name),
			VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled},
		})
		if err != nil {
			t.Fatalf("enable versioning on bucket %s: %v", name, err)
		}
	}
	return name
}

// tail returns at most the last n bytes of data, starting at a line.
func tail(data []byte, n int) []byte {
	if len(data) <= n {
		return data
	}
	data = data[len(data)-n:]
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[i+1:]
	}
	return data
}
