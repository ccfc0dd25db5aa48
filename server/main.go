package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kb-labs/sandbox"
)

// Main is `sandbox serve [--listen ADDR] [--token-file FILE] [--config FILE]
// [--drain-timeout DUR] [--best-effort]`: it serves until SIGTERM or SIGINT,
// drains the runs in flight (cancelling what is left after the drain
// timeout) and returns 0. Bad flags or configuration, or a host that cannot
// enforce the configuration: one line on stderr, 125. As an ordinary user
// it serves rootless, like `sandbox run`. The caller must have called
// initproc.MaybeRun first (cmd/sandbox-serve does).
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return run(ctx, args, stdout, stderr, onListen)
}

// onListen, when set (tests), receives the address Main listens on.
var onListen func(net.Addr)

// run is Main with the signal context and, for tests, a callback receiving
// the bound address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, bound func(net.Addr)) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	listen := fs.String("listen", "", "address to listen on (default "+DefaultListen+", or server.listen of the config)")
	tokenFile := fs.String("token-file", "", "file holding the bearer token (default: $SANDBOX_TOKEN, or server.tokenFile)")
	configFile := fs.String("config", "", "YAML or JSON config file")
	drain := fs.Duration("drain-timeout", DefaultDrainTimeout, "how long runs in flight may finish after SIGTERM")
	bestEffort := fs.Bool("best-effort", false, "serve where the host lacks a protection the configuration asks for (listed in every result's isolation.degraded); default: refuse to start")
	usage := func(msg string) int {
		fmt.Fprintf(stderr, "sandbox serve: %s\n", msg)
		return 125
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: sandbox serve [--listen 127.0.0.1:8080] [--token-file FILE] [--config FILE] [--drain-timeout 30s] [--best-effort]")
			fmt.Fprintln(stdout, "\nServes the HTTP API (POST /v1/runs, GET /v1/capabilities, /metrics, /v1/openapi.json) until SIGTERM.\n"+
				"As an ordinary user it runs rootless; the start log says what runs lack.\n\nFlags:")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		return usage(strings.TrimPrefix(err.Error(), "flag provided but not defined: ") + "; accepted: --listen ADDR, --token-file FILE, --config FILE, --drain-timeout DUR, --best-effort")
	}
	if fs.NArg() > 0 {
		return usage(fmt.Sprintf("unexpected argument %q; serve takes flags only", fs.Arg(0)))
	}
	if *drain <= 0 {
		return usage("--drain-timeout: want a positive duration such as 30s")
	}
	var cfg sandbox.Config
	if *configFile != "" {
		c, err := sandbox.LoadConfig(*configFile)
		if err != nil {
			return usage(err.Error())
		}
		cfg = c
	}
	if *bestEffort {
		cfg.BestEffort = true
	}
	addr := firstNonEmpty(*listen, cfg.Server.Listen, DefaultListen)
	token, err := loadToken(*tokenFile, cfg.Server.TokenFile)
	if err != nil {
		return usage(err.Error())
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	srv, err := New(cfg, Options{Token: token, Logger: logger, DrainTimeout: *drain})
	if err != nil {
		return usage(err.Error())
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "sandbox serve: --listen %s: %v\n", addr, err)
		return 1
	}
	if bound != nil {
		bound(ln.Addr())
	}
	if err := srv.ServeListener(ctx, ln); err != nil {
		if errors.Is(err, ErrNoToken) {
			return usage(err.Error())
		}
		fmt.Fprintf(stderr, "sandbox serve: %v\n", err)
		return 1
	}
	return 0
}

// loadToken: --token-file, then $SANDBOX_TOKEN, then server.tokenFile.
func loadToken(flagFile, cfgFile string) (string, error) {
	file, name := flagFile, "--token-file"
	if file == "" {
		if t := strings.TrimSpace(os.Getenv("SANDBOX_TOKEN")); t != "" {
			return t, nil
		}
		file, name = cfgFile, "server.tokenFile"
	}
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The operator's own path, on the operator's terminal; the uid
		// matters when serve runs as another user than the file's owner.
		reason := "cannot read the token file"
		var pe *os.PathError
		if errors.As(err, &pe) {
			reason += ": " + pe.Err.Error()
		}
		if errors.Is(err, os.ErrPermission) {
			reason += fmt.Sprintf(" (the server runs as uid %d: make the file readable by it)", os.Geteuid())
		}
		return "", fmt.Errorf("%s %s: %s", name, file, reason)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, "\r\n\t ") {
		return "", fmt.Errorf("%s %s: want a file holding one token on one line", name, file)
	}
	return t, nil
}

func firstNonEmpty(list ...string) string {
	for _, s := range list {
		if s != "" {
			return s
		}
	}
	return ""
}
