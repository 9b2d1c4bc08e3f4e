package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

func filesCommand() *Command {
	return &Command{
		Name:  "files",
		Short: "upload, list, show and delete firmware and configuration files",
		Long: "Manage the files CPEs download (fleetacs.files.v1.FilesService, docs/files.md):\n" +
			"firmware images, configuration and vendor files. Viewers list and show them,\n" +
			"operators upload and delete them. Every files command takes the connection\n" +
			"flags -addr, -token, -tls, -ca-file, -cert-file, -key-file and -timeout.",
		Commands: []*Command{
			{
				Name:  "upload",
				Args:  "PATH",
				Short: "Upload a file",
				Long: "Upload the file at PATH (- for stdin, with -name). Its SHA-256 and size are\n" +
					"computed first and sent with it, so the server keeps it only if what it\n" +
					"received is what was read. -type is the CWMP FileType (firmware, config,\n" +
					"or the full \"1 Firmware Upgrade Image\" form); a firmware needs -version.\n" +
					"Example: FILE=$(fleetctl files upload hgw-2.1.bin -type firmware -version 2.1 -product-class HGW -o id)",
				Setup: setupFilesUpload,
			},
			{
				Name:  "list",
				Short: "List files, newest first",
				Long:  "List the tenant's files matching every filter given. Output (-o): table (default) or json.",
				Setup: setupFilesList,
			},
			{
				Name:  "get",
				Args:  "ID",
				Short: "Show one file's record",
				Long:  "Show one file's record. Output (-o): text (default) or json.",
				Setup: setupFilesGet,
			},
			{
				Name:  "url",
				Args:  "ID DEVICE_ID",
				Short: "Print a device's download URL of a file",
				Long: "Print the signed URL at which the device DEVICE_ID may download file ID until\n" +
					"it expires (-ttl), for a Download task: the CWMP listener answers it, and only\n" +
					"it, with the file (HTTP Range supported). Output (-o): text (the URL alone) or json.\n" +
					"Example: fleetctl tasks create $DEV download \"$(fleetctl files url $FILE $DEV)\" -file-type \"1 Firmware Upgrade Image\"",
				Setup: setupFilesURL,
			},
			{
				Name:  "delete",
				Args:  "ID...",
				Short: "Delete files by id",
				Long:  "Delete the files with these ids, record and bytes; their download URLs answer 404 from then on.",
				Setup: setupFilesDelete,
			},
		},
	}
}

// fileTypes are the short names -type accepts for the CWMP FileTypes of a
// Download (TR-069 A.3.2.8).
var fileTypes = map[string]string{
	"firmware": "1 Firmware Upgrade Image",
	"web":      "2 Web Content",
	"config":   "3 Vendor Configuration File",
	"tone":     "4 Tone File",
	"ringer":   "5 Ringer File",
}

func fileType(s string) string {
	if t, ok := fileTypes[strings.ToLower(s)]; ok {
		return t
	}
	return s
}

type filesUploadOptions struct {
	conn           connFlags
	tenant, name   string
	typ, version   string
	oui            string
	productClasses stringList
	uploadTimeout  time.Duration
	output         string
}

func setupFilesUpload(fs *flag.FlagSet) RunFunc {
	o := &filesUploadOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the file")
	fs.StringVar(&o.name, "name", "", "`name` of the file on the server (default: PATH's base name)")
	fs.StringVar(&o.typ, "type", "", "CWMP file `type`: firmware, web, config, tone, ringer or the full FileType (required)")
	fs.StringVar(&o.version, "version", "", "`version` the file installs (required for firmware)")
	fs.StringVar(&o.oui, "oui", "", "manufacturer `OUI` the file is for (default: any)")
	fs.Var(&o.productClasses, "product-class", "product `class` the file is for (repeatable; default: any)")
	fs.DurationVar(&o.uploadTimeout, "upload-timeout", 30*time.Minute, "deadline of the whole upload")
	fs.StringVar(&o.output, "o", "text", "output `format`: text, json or id (the file's id alone)")
	return func(ctx context.Context, env *Env, args []string) error {
		arg, err := oneArg(fs, args, "PATH")
		if err != nil {
			return err
		}
		return filesUpload(ctx, env, o, arg)
	}
}

// uploadChunk is the size of the upload's messages (the server takes at
// most 1 MiB each).
const uploadChunk = 256 << 10

func filesUpload(ctx context.Context, env *Env, o *filesUploadOptions, path string) error {
	const what = "files upload"
	if o.typ == "" {
		return Usagef("-type is required")
	}
	if err := checkFormat(o.output, "text", "json", "id"); err != nil {
		return err
	}
	name := o.name
	var src io.ReadSeeker
	if path == "-" {
		if name == "" {
			return Usagef("-name is required when reading stdin")
		}
		// Stdin cannot be read twice: it is spooled to a temporary file
		// so that its checksum goes ahead of its bytes.
		tmp, err := os.CreateTemp("", "fleetctl-upload-*")
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		defer func() { _ = tmp.Close(); _ = os.Remove(tmp.Name()) }()
		if _, err := io.Copy(tmp, env.Stdin); err != nil {
			return fmt.Errorf("%s: read stdin: %w", what, err)
		}
		src = tmp
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		defer func() { _ = f.Close() }()
		src = f
		if name == "" {
			name = filepath.Base(path)
		}
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	h := sha256.New()
	size, err := io.Copy(h, src)
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", what, path, err)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	uctx, cancel := context.WithTimeout(ctx, o.uploadTimeout)
	defer cancel()
	stream, err := filesv1.NewFilesServiceClient(c.cc).UploadFile(uctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.rpcError(err))
	}
	hdr := &filesv1.UploadFileHeader{Name: name, FileType: fileType(o.typ), ProductClasses: o.productClasses, Oui: o.oui,
		Version: o.version, ExpectedSize: uint64(size), ExpectedSha256: hex.EncodeToString(h.Sum(nil))}
	sendErr := stream.Send(&filesv1.UploadFileRequest{Tenant: o.tenant, Part: &filesv1.UploadFileRequest_Header{Header: hdr}})
	buf := make([]byte, uploadChunk)
	for sendErr == nil {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			sendErr = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%s: read %s: %w", what, path, rerr)
		}
	}
	// A failed Send means the server ended the call; its status comes
	// with CloseAndRecv.
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.rpcError(err))
	}
	if o.output == "id" {
		_, err := fmt.Fprintln(env.Stdout, resp.GetFile().GetId())
		return err
	}
	return writeFile(env, o.output, resp.GetFile())
}

func writeFile(env *Env, output string, f *filesv1.File) error {
	if output == "json" {
		return writeIndented(env.Stdout, protoJSON(f))
	}
	tw := newTable(env.Stdout)
	pcs := strings.Join(f.GetProductClasses(), ",")
	if pcs == "" {
		pcs = "any"
	}
	for _, kv := range [][2]string{
		{"ID", f.GetId()}, {"Tenant", f.GetTenant()}, {"Name", f.GetName()}, {"Type", f.GetFileType()},
		{"Version", f.GetVersion()}, {"Product classes", pcs}, {"OUI", orAny(f.GetOui())},
		{"Size", fmt.Sprint(f.GetSize())}, {"SHA-256", f.GetSha256()}, {"Created", formatTime(f.GetCreateTime())},
		{"Uploader", f.GetUploader()},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], quoteIfNeeded(kv[1]))
	}
	return tw.Flush()
}

func orAny(s string) string {
	if s == "" {
		return "any"
	}
	return s
}

type filesListOptions struct {
	conn                                  connFlags
	tenant, typ, productClass, version, n string
	output                                string
}

func setupFilesList(fs *flag.FlagSet) RunFunc {
	o := &filesListOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the files")
	fs.StringVar(&o.typ, "type", "", "only files of this `type` (firmware, config, ... or the full FileType)")
	fs.StringVar(&o.productClass, "product-class", "", "only files for this product `class` (or for any)")
	fs.StringVar(&o.version, "version", "", "only files of this `version`")
	fs.StringVar(&o.n, "name", "", "only the file of this `name`")
	fs.StringVar(&o.output, "o", "table", "output `format`: table or json")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		return filesList(ctx, env, o)
	}
}

func filesList(ctx context.Context, env *Env, o *filesListOptions) error {
	const what = "files list"
	if err := checkFormat(o.output, "table", "json"); err != nil {
		return err
	}
	typ := ""
	if o.typ != "" {
		typ = fileType(o.typ)
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := filesv1.NewFilesServiceClient(c.cc)
	req := &filesv1.ListFilesRequest{Tenant: o.tenant, FileType: typ, ProductClass: o.productClass, Version: o.version, Name: o.n, PageSize: 1000}
	all, err := listAll(what, c.addr, func(token string) ([]*filesv1.File, string, error) {
		req.PageToken = token
		resp, err := call(ctx, c, client.ListFiles, req)
		return resp.GetFiles(), resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSONList(env.Stdout, what, all)
	}
	tw := newTable(env.Stdout)
	fmt.Fprintln(tw, "ID\tNAME\tTYPE\tVERSION\tPRODUCT CLASSES\tSIZE\tCREATED")
	for _, f := range all {
		pcs := strings.Join(f.GetProductClasses(), ",")
		if pcs == "" {
			pcs = "any"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.GetId(), quoteIfNeeded(f.GetName()), quoteIfNeeded(f.GetFileType()),
			quoteIfNeeded(orDash(f.GetVersion())), quoteIfNeeded(pcs), f.GetSize(), formatTime(f.GetCreateTime()))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type filesGetOptions struct {
	conn           connFlags
	tenant, output string
}

func setupFilesGet(fs *flag.FlagSet) RunFunc {
	o := &filesGetOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the file")
	fs.StringVar(&o.output, "o", "text", "output `format`: text or json")
	return func(ctx context.Context, env *Env, args []string) error {
		arg, err := oneArg(fs, args, "file ID")
		if err != nil {
			return err
		}
		if err := checkFormat(o.output, "text", "json"); err != nil {
			return err
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("files get", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, filesv1.NewFilesServiceClient(c.cc).GetFile, &filesv1.GetFileRequest{Tenant: o.tenant, Id: arg})
		if err != nil {
			return fmt.Errorf("files get %s: %w", quoteIfNeeded(arg), err)
		}
		return writeFile(env, o.output, resp.GetFile())
	}
}

type filesDeleteOptions struct {
	conn   connFlags
	tenant string
}

func setupFilesDelete(fs *flag.FlagSet) RunFunc {
	o := &filesDeleteOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the files")
	return func(ctx context.Context, env *Env, args []string) error {
		ids, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return Usagef("want at least one file ID")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("files delete", err)
		}
		defer c.cc.Close()
		client := filesv1.NewFilesServiceClient(c.cc)
		for _, id := range ids {
			if _, err := call(ctx, c, client.DeleteFile, &filesv1.DeleteFileRequest{Tenant: o.tenant, Id: id}); err != nil {
				return fmt.Errorf("files delete %s: %w", quoteIfNeeded(id), err)
			}
			if _, err := fmt.Fprintf(env.Stdout, "deleted %s\n", id); err != nil {
				return err
			}
		}
		return nil
	}
}

type filesURLOptions struct {
	conn           connFlags
	tenant, output string
	ttl            time.Duration
}

func setupFilesURL(fs *flag.FlagSet) RunFunc {
	o := &filesURLOptions{}
	o.conn.register(fs)
	registerTenant(fs, &o.tenant, "the file and the device")
	fs.DurationVar(&o.ttl, "ttl", 24*time.Hour, "how long the URL works")
	fs.StringVar(&o.output, "o", "text", "output `format`: text or json")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return Usagef("want a file ID and a DEVICE_ID")
		}
		if err := checkFormat(o.output, "text", "json"); err != nil {
			return err
		}
		if o.ttl < time.Second || o.ttl > 1<<31*time.Second {
			return Usagef("-ttl must be at least 1s, got %s", o.ttl)
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("files url", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, filesv1.NewFilesServiceClient(c.cc).CreateDownloadUrl,
			&filesv1.CreateDownloadUrlRequest{Tenant: o.tenant, Id: pos[0], DeviceId: pos[1], TtlSeconds: uint32(o.ttl / time.Second)})
		if err != nil {
			return fmt.Errorf("files url %s: %w", quoteIfNeeded(pos[0]), err)
		}
		if o.output == "json" {
			return writeIndented(env.Stdout, protoJSON(resp))
		}
		_, err = fmt.Fprintln(env.Stdout, resp.GetUrl())
		return err
	}
}
