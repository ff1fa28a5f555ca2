package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ringmaster/ringmaster/internal/app"
	"github.com/ringmaster/ringmaster/internal/config"
)

func serveCmd(g *globals) *cobra.Command {
	var configFile, listen, database, logFormat, logLevel, role string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the Ringmaster server (embedded SQLite and content store by default)",
		Long: `Run the Ringmaster server.

Settings come from built-in defaults, then the YAML file given by --config
(env RINGMASTER_CONFIG), then RINGMASTER_* environment variables, then flags.
On first start it creates an admin token and writes it to DATA/admin.token.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configFile, os.Getenv)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if f.Changed("data") {
				cfg.DataDir = g.data
			}
			if f.Changed("listen") {
				cfg.Listen = listen
			}
			if f.Changed("database") {
				cfg.Database = database
			}
			if f.Changed("log-format") {
				cfg.LogFormat = logFormat
			}
			if f.Changed("log-level") {
				cfg.LogLevel = logLevel
			}
			if f.Changed("role") {
				cfg.Role = role
			}
			if err := cfg.Validate(); err != nil {
				return fmt.Errorf("configuration: %w", err)
			}
			log := cfg.Logger(g.stderr)
			a, err := app.New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", os.Getenv("RINGMASTER_CONFIG"), "YAML config file (env RINGMASTER_CONFIG)")
	f.StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address (env RINGMASTER_LISTEN)")
	f.StringVar(&database, "database", "", "PostgreSQL URL (postgres://…); default SQLite in --data (env RINGMASTER_DATABASE)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json (env RINGMASTER_LOG_FORMAT)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error (env RINGMASTER_LOG_LEVEL)")
	f.StringVar(&role, "role", "all", "what this replica does: device (check-ins, events, downloads, metadata), api (admin API, console, MCP), worker (jobs, controller, health counting) or all (env RINGMASTER_ROLE)")
	return cmd
}
