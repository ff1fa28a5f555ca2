package cli

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/duration"
	"github.com/ringmaster/ringmaster/internal/tuf"
)

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func tokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens (admin)"}
	var name, role, ttl, reason string
	var products []string
	var budget int64
	create := &cobra.Command{
		Use:   "create --name N --role ROLE [--product P]... [--ttl 720h]",
		Short: "Create a token; prints its secret (shown once) on stdout",
		Long: "Roles: admin (everything), release_manager (deploy, steer rollouts, holds, rings, audit), " +
			"publisher (products, updates, publishing), agent (read, pause/halt/cancel, holds, audit), viewer (read). " +
			"--product limits the token to those products.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, secret, err := c.CreateToken(cmd.Context(), client.NewToken{Name: name, Role: role, Products: products, Budget: budget, TTL: ttl})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "created token %s (%s); the secret below is not stored anywhere, keep it now\n", t.ID, t.Role)
			fmt.Fprintln(g.stdout, secret)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for (required)")
	create.Flags().StringVar(&role, "role", "", "admin, release_manager, publisher, agent or viewer (required)")
	create.Flags().StringSliceVar(&products, "product", nil, "limit the token to this product (repeatable)")
	create.Flags().StringVar(&ttl, "ttl", "", "lifetime, e.g. 720h (default: no expiry)")
	create.Flags().Int64Var(&budget, "budget", 0, "devices the token may newly expose per day and deployment through MCP plans without approval")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")
	list := &cobra.Command{
		Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tPRODUCTS\tEXPIRES\tREVOKED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, orAll(strings.Join(t.Products, ",")), fmtTime(t.ExpiresAt), fmtTime(t.RevokedAt))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID [--reason TEXT]", Short: "Revoke a token at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.RevokeToken(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s revoked at %s\n", t.ID, fmtTime(t.RevokedAt))
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func enrollmentCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "enrollment", Short: "Manage device enrollment keys (admin)"}
	var name, ttl, reason string
	var maxDevices int64
	create := &cobra.Command{
		Use: "create --name N [--ttl DUR] [--max-devices N]", Short: "Create an enrollment key; prints its secret (shown once)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, secret, err := c.IssueEnrollmentKey(cmd.Context(), client.NewEnrollmentKey{Name: name, TTL: ttl, MaxDevices: maxDevices})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "created enrollment key %s; devices enroll with POST /v1/device/enroll and this secret\n", k.ID)
			fmt.Fprintln(g.stdout, secret)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "which fleet or image it is for (required)")
	create.Flags().StringVar(&ttl, "ttl", "", "lifetime, e.g. 2160h (default: no expiry)")
	create.Flags().Int64Var(&maxDevices, "max-devices", 0, "how many devices the key may enroll (default: no quota)")
	_ = create.MarkFlagRequired("name")
	list := &cobra.Command{
		Use: "list", Short: "List enrollment keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ks, err := c.EnrollmentKeys(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tENROLLED\tCREATED BY\tEXPIRES\tREVOKED")
			for _, k := range ks {
				enrolled := fmt.Sprint(k.Enrolled)
				if k.MaxDevices > 0 {
					enrolled += fmt.Sprintf(" of %d", k.MaxDevices)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, enrolled, k.CreatedBy, fmtTime(k.ExpiresAt), fmtTime(k.RevokedAt))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Stop a key enrolling devices (enrolled devices keep their credentials)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			k, err := c.RevokeEnrollmentKey(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s revoked at %s\n", k.ID, fmtTime(k.RevokedAt))
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func deviceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "device", Short: "List, show, revoke and reset devices; version distributions"}
	var reason string
	revoke := &cobra.Command{
		Use: "revoke ID --reason TEXT", Short: "Revoke a device's credential (check-ins and events refused, no re-enrollment)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.RevokeDevice(cmd.Context(), args[0], reason); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s revoked\n", args[0])
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = revoke.MarkFlagRequired("reason")
	reset := &cobra.Command{
		Use: "reset ID --reason TEXT", Short: "Refuse every credential the device holds and let it enroll again (a reflashed or stolen-credential device)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			gen, err := c.ResetDevice(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s reset: earlier credentials are refused; it may enroll again (credential generation %d)\n", args[0], gen)
			return nil
		},
	}
	reset.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = reset.MarkFlagRequired("reason")
	accept := &cobra.Command{
		Use: "accept ID --reason TEXT", Short: "Accept a Mender device's pending authentication request (ringmaster device pending lists them)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.AcceptDevice(cmd.Context(), args[0], reason); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%s accepted: its next authentication request gets its token\n", args[0])
			return nil
		},
	}
	accept.Flags().StringVar(&reason, "reason", "", "why (required)")
	_ = accept.MarkFlagRequired("reason")
	pending := &cobra.Command{
		Use: "pending", Short: "Mender devices whose authentication requests await acceptance", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ds, err := c.MenderDevices(cmd.Context(), "pending")
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tREQUESTED\tIDENTITY")
			for _, d := range ds {
				keys := slices.Sorted(maps.Keys(d.Identity))
				var id []string
				for _, k := range keys {
					id = append(id, k+"="+d.Identity[k])
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", d.DeviceID, d.RequestedAt.Format(time.RFC3339), strings.Join(id, " "))
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(revoke, reset, accept, pending)
	cmd.AddCommand(deviceInventoryCmds(g)...)
	return cmd
}

func auditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the tamper-evident audit log"}
	var f client.AuditFilter
	var since, until string
	var asJSON bool
	list := &cobra.Command{
		Use: "list [--actor A] [--action X] [--target T] [--since TIME] [--until TIME] [--limit N]", Short: "List audit entries, newest first",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, t := range []struct {
				s    string
				into *time.Time
			}{{since, &f.Since}, {until, &f.Until}} {
				if t.s == "" {
					continue
				}
				v, err := parseWhen(t.s)
				if err != nil {
					return err
				}
				*t.into = v
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			es, err := c.Audit(cmd.Context(), f)
			if err != nil {
				return err
			}
			if asJSON {
				return g.printJSON(es)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tTARGET\tREASON")
			for _, e := range es {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.At.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, e.Reason)
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&f.Actor, "actor", "", "only this actor (a trailing * matches a prefix)")
	list.Flags().StringVar(&f.Action, "action", "", "only this action, e.g. deployment.paused or deployment.*")
	list.Flags().StringVar(&f.Target, "target", "", "only this target (a deployment, update, hold or token id)")
	list.Flags().StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (24h)")
	list.Flags().StringVar(&until, "until", "", "before this time (RFC 3339) or this long ago")
	list.Flags().IntVar(&f.Limit, "limit", 50, "at most this many entries (1-1000)")
	list.Flags().Int64Var(&f.Before, "before", 0, "entries before this sequence number (paging)")
	list.Flags().BoolVar(&asJSON, "json", false, "print entries as JSON, with before/after states and hashes")
	var anchors []string
	verify := &cobra.Command{
		Use: "verify [--anchor SEQ:HASH]...", Short: "Recompute the hash chain; exits 1 if any entry was edited, deleted or inserted",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			rep, err := c.VerifyAudit(cmd.Context(), anchors...)
			if err != nil {
				return err
			}
			if !rep.Intact {
				for _, p := range rep.Problems {
					fmt.Fprintln(g.stdout, "TAMPERED:", p)
				}
				return fmt.Errorf("the audit log fails verification (%d problems)", len(rep.Problems))
			}
			fmt.Fprintf(g.stdout, "intact: %d entries; head %s (record it and pass --anchor %s next time)\n", rep.Entries, rep.Head, rep.Head)
			return nil
		},
	}
	verify.Flags().StringArrayVar(&anchors, "anchor", nil, "a head printed by an earlier verify, which must still be in the chain")
	cmd.AddCommand(list, verify)
	return cmd
}

// parseWhen reads an RFC 3339 time or a duration ago.
func parseWhen(s string) (time.Time, error) {
	if d, err := duration.Parse(s); err == nil {
		return time.Now().Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
	}
	return t, nil
}

// passphrase reads the key passphrase from --passphrase-file or
// RINGMASTER_KEY_PASSPHRASE, never from a flag's value (it would show in
// the process list and shell history).
func passphrase(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if v := os.Getenv("RINGMASTER_KEY_PASSPHRASE"); v != "" {
		return []byte(v), nil
	}
	return nil, errors.New("set RINGMASTER_KEY_PASSPHRASE or --passphrase-file")
}

func keysCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "TUF signing keys: offline root keys, rotation, status",
		Long: "Root keys belong offline: generate them on an offline machine (keys generate), draft a new root that names them " +
			"(keys root draft), sign it with a threshold of the current and of the new root keys (keys root sign), and push it " +
			"(keys root push). Online keys (targets, snapshot, timestamp) are rotated with keys rotate-online."}
	var passFile, reason, out, from string
	var rootKeys []string
	var threshold int
	var expires time.Duration
	generate := &cobra.Command{
		Use: "generate FILE", Short: "Create an ed25519 key encrypted with the passphrase; prints its key id", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := passphrase(passFile)
			if err != nil {
				return err
			}
			key, err := tuf.GenerateKeyFile(args[0], pass)
			if err != nil {
				return err
			}
			id, _ := key.ID()
			fmt.Fprintln(g.stdout, id)
			return nil
		},
	}
	status := &cobra.Command{
		Use: "status", Short: "Each role's version, expiry, keys, and how many the server holds", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			roles, err := c.TUFStatus(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tTHRESHOLD\tKEYS\tHELD BY SERVER")
			for _, name := range []string{tuf.Root, tuf.Targets, tuf.Snapshot, tuf.Timestamp} {
				r := roles[name]
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\n", name, r.Version, r.Expires.UTC().Format(time.RFC3339), r.Threshold, len(r.KeyIDs), r.HeldKeys)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// The ids, because moving a key offline starts from its file
			// (KEYS_DIR/<id>.key, by default ringmaster-data/keys).
			fmt.Fprintln(g.stdout, "\nKEY ID                                                            ROLE       HELD BY SERVER")
			for _, name := range []string{tuf.Root, tuf.Targets, tuf.Snapshot, tuf.Timestamp} {
				r := roles[name]
				for _, id := range r.KeyIDs {
					held := "no (offline)"
					if slices.Contains(r.HeldKeyIDs, id) {
						held = "yes: keys/" + id + ".key"
					}
					fmt.Fprintf(g.stdout, "%-64s  %-9s  %s\n", id, name, held)
				}
			}
			return nil
		},
	}
	rotate := &cobra.Command{
		Use: "rotate-online --reason TEXT [--out DRAFT]", Short: "Replace the online keys; writes a draft root to sign offline if the server holds no root key",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			res, err := c.RotateOnlineKeys(cmd.Context(), reason)
			if err != nil {
				return err
			}
			if res.Applied {
				fmt.Fprintf(g.stdout, "online keys rotated; root version %d\n", res.RootVersion)
				return nil
			}
			if out == "" {
				return errors.New("the server holds no root key: pass --out to save the draft root, sign it offline, then keys root push")
			}
			if err := os.WriteFile(out, res.Draft, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "draft root version %d written to %s: sign it with `ringmaster keys root sign` and push it\n", res.RootVersion, out)
			return nil
		},
	}
	rotate.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit log)")
	_ = rotate.MarkFlagRequired("reason")
	rotate.Flags().StringVar(&out, "out", "", "where to write the draft root when the server cannot sign it")
	root := &cobra.Command{Use: "root", Short: "Draft, sign and push a new root"}
	draft := &cobra.Command{
		Use:   "draft --out FILE [--from FILE] [--root-key KEYFILE]... [--threshold N] [--expires 8760h]",
		Short: "Write the next root version (from the server's current root, or --from), with new root keys and threshold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cur []byte
			var err error
			if from != "" {
				cur, err = os.ReadFile(from)
			} else {
				var c *client.Client
				if c, err = g.client(); err == nil {
					cur, err = c.TUFRoot(cmd.Context())
				}
			}
			if err != nil {
				return err
			}
			var keys []*metadata.Key
			for _, f := range rootKeys {
				k, err := tuf.PublicKey(f)
				if err != nil {
					return err
				}
				keys = append(keys, k)
			}
			b, err := tuf.DraftRoot(cur, keys, threshold, time.Now().Add(expires))
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "unsigned draft written to %s\n", out)
			return nil
		},
	}
	draft.Flags().StringVar(&out, "out", "", "where to write the draft (required)")
	draft.Flags().StringVar(&from, "from", "", "start from this root file instead of the server's")
	draft.Flags().StringArrayVar(&rootKeys, "root-key", nil, "key file whose public key becomes a root key (repeatable; replaces the current root keys)")
	draft.Flags().IntVar(&threshold, "threshold", 0, "root signatures required (default: unchanged)")
	expires = 365 * duration.Day
	draft.Flags().Var((*duration.Value)(&expires), "expires", "how long the new root is valid, e.g. 365d")
	_ = draft.MarkFlagRequired("out")
	var keyFile string
	sign := &cobra.Command{
		Use: "sign FILE --key KEYFILE", Short: "Add a signature to a root file (in place)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := passphrase(passFile)
			if err != nil {
				return err
			}
			signer, id, err := tuf.LoadSigner(keyFile, pass)
			if err != nil {
				return err
			}
			body, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			signed, err := tuf.SignRoot(body, signer)
			if err != nil {
				return err
			}
			if err := os.WriteFile(args[0], signed, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "signed %s with key %s\n", args[0], id)
			return nil
		},
	}
	sign.Flags().StringVar(&keyFile, "key", "", "the key file (required)")
	_ = sign.MarkFlagRequired("key")
	push := &cobra.Command{
		Use: "push FILE --reason TEXT", Short: "Install a signed root on the server", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			v, err := c.PushRoot(cmd.Context(), body, reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "root version %d installed\n", v)
			return nil
		},
	}
	push.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	root.AddCommand(draft, sign, push)
	cmd.PersistentFlags().StringVar(&passFile, "passphrase-file", "", "read the key passphrase from this file (default: RINGMASTER_KEY_PASSPHRASE)")
	cmd.AddCommand(generate, status, rotate, root)
	return cmd
}
