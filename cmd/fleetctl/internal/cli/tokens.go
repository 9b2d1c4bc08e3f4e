package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
)

func tokensCommand() *Command {
	return &Command{
		Name:  "tokens",
		Short: "create, list and revoke API tokens",
		Long: "Manage the bearer tokens of the public API (fleetacs.auth.v1.TokenService);\n" +
			"every tokens command needs an admin token, and an admin manages only tokens\n" +
			"within its own tenants. Roles: viewer (reads), operator (also tags and, later,\n" +
			"tasks), admin (also deletion, device credentials and tokens). Every tokens\n" +
			"command takes the connection flags -addr, -token, -tls, -ca-file, -cert-file,\n" +
			"-key-file and -timeout.",
		Commands: []*Command{
			{
				Name:  "create",
				Short: "Create a token and print it, once",
				Long: "Create a token and print it on stdout, alone on its line: the server keeps only\n" +
					"its hash and cannot show it again. Its id, role and scope go to stderr.\n" +
					"-o json prints the token and its record as one JSON object instead.\n" +
					"Example: FLEETACS_TOKEN=$(fleetctl tokens create -role viewer -tenant default -name grafana)",
				Setup: setupTokensCreate,
			},
			{
				Name:  "list",
				Short: "List the tokens (never their secrets)",
				Long: "List the tokens within the caller's scope, ordered by id: active ones, or with\n" +
					"-all also those revoked or expired. Output (-o): table (default) or json.",
				Setup: setupTokensList,
			},
			{
				Name:  "revoke",
				Args:  "ID...",
				Short: "Revoke tokens by id",
				Long: "Revoke the tokens with these ids (the 16 hex digits after \"fat_\" in a token,\n" +
					"or the ID column of \"tokens list\"). Revoking a revoked token succeeds.\n" +
					"A server refuses a revoked token at once; other servers of the install\n" +
					"within their -auth.token-cache-ttl.",
				Setup: setupTokensRevoke,
			},
		},
	}
}

type tokensCreateOptions struct {
	conn    connFlags
	name    string
	role    string
	tenants stringList
	all     bool
	expires timeFlag
	output  string
}

func setupTokensCreate(fs *flag.FlagSet) RunFunc {
	o := &tokensCreateOptions{expires: timeFlag{ahead: true}}
	o.conn.register(fs)
	fs.StringVar(&o.name, "name", "", "what the token is for (`text`), e.g. the system that will use it")
	fs.StringVar(&o.role, "role", "", "`role` of the token: viewer, operator or admin (required)")
	fs.Var(&o.tenants, "tenant", "`tenant` the token covers (repeatable; default: the caller's, when it has one)")
	fs.BoolVar(&o.all, "all-tenants", false, "the token covers every tenant (the caller must too)")
	fs.Var(&o.expires, "expires", "when the token stops working: a `time` in RFC 3339 or a duration from now\n"+
		"(90m, 24h, 90d); default: never")
	fs.StringVar(&o.output, "o", "text", "output `format`: text (the token alone on stdout) or json")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		return tokensCreate(ctx, env, o)
	}
}

func tokensCreate(ctx context.Context, env *Env, o *tokensCreateOptions) error {
	const what = "tokens create"
	role, ok := parseRole(o.role)
	if !ok {
		return Usagef("-role must be viewer, operator or admin, got %q", o.role)
	}
	if err := checkFormat(o.output, "text", "json"); err != nil {
		return err
	}
	if o.all && len(o.tenants) > 0 {
		return Usagef("-all-tenants and -tenant exclude each other")
	}
	req := &authv1.CreateTokenRequest{Name: o.name, Role: role, Tenants: o.tenants, AllTenants: o.all}
	if ts := o.expires.timestamp(time.Now()); ts != nil {
		if at := ts.AsTime(); !at.After(time.Now()) {
			return Usagef("-expires %s is not in the future", at.Format(time.RFC3339))
		}
		req.ExpireTime = ts
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	resp, err := call(ctx, c, authv1.NewTokenServiceClient(c.cc).CreateToken, req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if o.output == "json" {
		b, err := json.Marshal(struct {
			Secret string          `json:"secret"`
			Token  json.RawMessage `json:"token"`
		}{resp.GetSecret(), protoJSON(resp.GetToken())})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		return err
	}
	t := resp.GetToken()
	if _, err := fmt.Fprintln(env.Stdout, resp.GetSecret()); err != nil {
		return fmt.Errorf("%s: write output: %w", what, err)
	}
	fmt.Fprintf(env.Stderr, "fleetctl: created token %s: role %s, %s, expires %s; it is shown only this once\n",
		t.GetId(), roleName(t.GetRole()), scope(t), orNever(t.GetExpireTime()))
	return nil
}

type tokensListOptions struct {
	conn   connFlags
	tenant string
	all    bool
	output string
}

func setupTokensList(fs *flag.FlagSet) RunFunc {
	o := &tokensListOptions{}
	o.conn.register(fs)
	fs.StringVar(&o.tenant, "tenant", "", "only tokens covering `tenant` (tokens for all tenants included)")
	fs.BoolVar(&o.all, "all", false, "include revoked and expired tokens")
	fs.StringVar(&o.output, "o", "table", "output `format`: table or json")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		return tokensList(ctx, env, o)
	}
}

func tokensList(ctx context.Context, env *Env, o *tokensListOptions) error {
	const what = "tokens list"
	if err := checkFormat(o.output, "table", "json"); err != nil {
		return err
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := authv1.NewTokenServiceClient(c.cc)
	req := &authv1.ListTokensRequest{Tenant: o.tenant, ShowInactive: o.all, PageSize: 1000}
	all, err := listAll(what, c.addr, func(token string) ([]*authv1.Token, string, error) {
		req.PageToken = token
		resp, err := call(ctx, c, client.ListTokens, req)
		return resp.GetTokens(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSONList(env.Stdout, what, all)
	}
	return writeTokenTable(env.Stdout, all)
}

func writeTokenTable(w io.Writer, tokens []*authv1.Token) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tROLE\tTENANTS\tNAME\tCREATED\tEXPIRES\tREVOKED\tCREATOR")
	for _, t := range tokens {
		revoked := "-"
		if t.GetRevokeTime() != nil {
			revoked = formatTime(t.GetRevokeTime())
		}
		tenants := strings.Join(t.GetTenants(), ",")
		if t.GetAllTenants() {
			tenants = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.GetId(), roleName(t.GetRole()), quoteIfNeeded(tenants),
			quoteIfNeeded(t.GetName()), formatTime(t.GetCreateTime()), orNever(t.GetExpireTime()), revoked, quoteIfNeeded(t.GetCreator()))
	}
	return tw.Flush()
}

type tokensRevokeOptions struct{ conn connFlags }

func setupTokensRevoke(fs *flag.FlagSet) RunFunc {
	o := &tokensRevokeOptions{}
	o.conn.register(fs)
	return func(ctx context.Context, env *Env, args []string) error {
		ids, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return Usagef("want at least one token id")
		}
		return tokensRevoke(ctx, env, o, ids)
	}
}

func tokensRevoke(ctx context.Context, env *Env, o *tokensRevokeOptions, ids []string) error {
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage("tokens revoke", err)
	}
	defer c.cc.Close()
	client := authv1.NewTokenServiceClient(c.cc)
	for _, id := range ids {
		// A whole token pasted by mistake: its id is inside.
		if rest, ok := strings.CutPrefix(id, "fat_"); ok && len(rest) > 16 {
			id = rest[:16]
		}
		if _, err := call(ctx, c, client.RevokeToken, &authv1.RevokeTokenRequest{Id: id}); err != nil {
			return fmt.Errorf("tokens revoke %s: %w", quoteIfNeeded(id), err)
		}
		if _, err := fmt.Fprintf(env.Stdout, "revoked %s\n", id); err != nil {
			return err
		}
	}
	return nil
}

func parseRole(s string) (authv1.Role, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "viewer":
		return authv1.Role_ROLE_VIEWER, true
	case "operator":
		return authv1.Role_ROLE_OPERATOR, true
	case "admin":
		return authv1.Role_ROLE_ADMIN, true
	}
	return authv1.Role_ROLE_UNSPECIFIED, false
}

func roleName(r authv1.Role) string {
	switch r {
	case authv1.Role_ROLE_VIEWER:
		return "viewer"
	case authv1.Role_ROLE_OPERATOR:
		return "operator"
	case authv1.Role_ROLE_ADMIN:
		return "admin"
	}
	return r.String()
}

func scope(t *authv1.Token) string {
	if t.GetAllTenants() {
		return "all tenants"
	}
	return "tenants " + strings.Join(t.GetTenants(), ",")
}

func orNever(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "never"
	}
	return formatTime(ts)
}

// protoJSON is m in the API's JSON mapping; encoding/json re-indents or
// compacts it, which makes protojson's varying white space stable.
func protoJSON(m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		return json.RawMessage("null")
	}
	return b
}
