package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"microbox/api"
)

const mcpUsage = `Usage: microbox mcp --server URL [--api-key KEY]

An MCP server on stdin and stdout, for desktop clients and IDEs that start
one as a command: its tools (run_code, create_session, exec, write_file,
read_file, list_files, close_session, list_languages) call the API of a
running "microbox serve" at URL, with KEY. It needs no root and no VM of
its own. The server also speaks MCP itself at URL/mcp (Streamable HTTP).

`

func cmdMCP(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, mcpUsage)
		fs.PrintDefaults()
	}
	server := fs.String("server", os.Getenv("MICROBOX_SERVER"), "URL of the microbox API, such as http://127.0.0.1:2358 (or $MICROBOX_SERVER)")
	key := fs.String("api-key", os.Getenv("MICROBOX_API_KEY"), "API key sent as X-API-Key (or $MICROBOX_API_KEY); none for a server without keys")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	u, err := url.Parse(*server)
	switch {
	case *server == "":
		fs.Usage()
		return usageError{"--server is required: the URL of a running `microbox serve`"}
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return usageError{fmt.Sprintf("--server %q is not an http:// or https:// URL", *server)}
	}
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	// No client timeout: a run or an exec takes as long as its limits allow,
	// and the MCP client cancels the call when it gives up.
	srv := api.NewMCPServer(*server, *key, &http.Client{}, version)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = srv.Run(ctx, &mcp.IOTransport{Reader: os.Stdin, Writer: nopWriteCloser{stdout}, MaxLineLength: 100 << 20})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
