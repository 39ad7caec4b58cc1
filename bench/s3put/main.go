// Command s3put is bench/offsite's peer: it uploads every file under a
// directory to a bucket with plain parallel PutObject calls (no checksum
// beyond the SDK's default, no retention, no conditional write), the upper
// bound of what an S3 client can push to the server.
//
//	s3put -endpoint URL -bucket B -prefix P [-workers 8] DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"
)

func main() {
	endpoint := flag.String("endpoint", "", "S3 endpoint URL")
	bucket := flag.String("bucket", "", "bucket")
	prefix := flag.String("prefix", "", "key prefix")
	workers := flag.Int("workers", 8, "parallel uploads")
	flag.Parse()
	if flag.NArg() != 1 || *bucket == "" {
		fmt.Fprintln(os.Stderr, "usage: s3put -endpoint URL -bucket B -prefix P [-workers N] DIR")
		os.Exit(2)
	}
	if err := run(context.Background(), *endpoint, *bucket, *prefix, *workers, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "s3put:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, endpoint, bucket, prefix string, workers int, dir string) error {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("us-east-1"))
	if err != nil {
		return err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = true
	})
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		g.Go(func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			_, err = client.PutObject(gctx, &s3.PutObjectInput{
				Bucket: &bucket, Key: aws.String(prefix + "/" + filepath.ToSlash(rel)), Body: f, ContentLength: aws.Int64(fi.Size()),
			})
			return err
		})
		return nil
	})
	if err != nil {
		return err
	}
	return g.Wait()
}
