// Package gridfs is the MongoDB blob store: GridFS in its own bucket
// (default "fleetacs_files": collections fleetacs_files.files and
// fleetacs_files.chunks), apart from the devices' collections. A blob's
// GridFS id is "tenant:id". The driver writes the chunks first and the
// files document last, and readers look a blob up by its files document,
// so a blob is invisible until committed; an aborted upload deletes its
// chunks.
//
// Reads do not use the driver's download stream, which can only skip
// forward by reading: a read from an offset queries the chunks from the
// one holding that offset on, so a Range request costs what it returns.
package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/fleetacs/fleetacs/pkg/mongoindex"
	"github.com/fleetacs/fleetacs/services/files/blob"
)

// DefaultBucket is the bucket's default name.
const DefaultBucket = "fleetacs_files"

// Store is the GridFS blob store on a database whose client the caller
// owns.
type Store struct {
	db     *mongo.Database
	name   string
	bucket *mongo.GridFSBucket
	chunk  int32
}

var _ blob.Store = (*Store)(nil)

// New returns a store on db in bucket (empty: DefaultBucket), writing
// chunks of chunkSize bytes (0: the driver's 255 KiB). It does no I/O.
func New(db *mongo.Database, bucket string, chunkSize int32) *Store {
	if bucket == "" {
		bucket = DefaultBucket
	}
	o := options.GridFSBucket().SetName(bucket)
	if chunkSize > 0 {
		o.SetChunkSizeBytes(chunkSize)
	}
	return &Store{db: db, name: bucket, bucket: db.GridFSBucket(o), chunk: chunkSize}
}

// Start checks that the server answers and creates the bucket's indexes,
// those the driver would make at its first write, by the driver's names:
// here, they are made safely when several processes start at once
// (package mongoindex), and the driver finds them.
func (s *Store) Start(ctx context.Context) error {
	if err := s.db.Client().Ping(ctx, nil); err != nil {
		return fmt.Errorf("start gridfs blob store: %w", err)
	}
	if err := mongoindex.Ensure(ctx, s.db.Collection(s.name+".files"), mongo.IndexModel{
		Keys: bson.D{{Key: "filename", Value: int32(1)}, {Key: "uploadDate", Value: int32(1)}},
	}); err != nil {
		return fmt.Errorf("start gridfs blob store: %w", err)
	}
	if err := mongoindex.Ensure(ctx, s.db.Collection(s.name+".chunks"), mongo.IndexModel{
		Keys:    bson.D{{Key: "files_id", Value: int32(1)}, {Key: "n", Value: int32(1)}},
		Options: options.Index().SetUnique(true),
	}); err != nil {
		return fmt.Errorf("start gridfs blob store: %w", err)
	}
	return nil
}

// Close does nothing: the caller disconnects the client.
func (s *Store) Close() error { return nil }

func key(tenant, id string) (string, error) {
	if !blob.ValidName(tenant) || !blob.ValidName(id) {
		return "", fmt.Errorf("blob name %q/%q: %w", tenant, id, blob.ErrNotFound)
	}
	return tenant + ":" + id, nil
}

// Create implements blob.Store.
func (s *Store) Create(ctx context.Context, tenant, id string) (blob.Writer, error) {
	k, err := key(tenant, id)
	if err != nil {
		return nil, err
	}
	us, err := s.bucket.OpenUploadStreamWithID(ctx, k, id)
	if err != nil {
		return nil, fmt.Errorf("create gridfs blob: %w", err)
	}
	return &writer{us: us}, nil
}

type writer struct {
	us   *mongo.GridFSUploadStream
	done bool
}

func (w *writer) Write(p []byte) (int, error) { return w.us.Write(p) }

func (w *writer) Commit() error {
	if w.done {
		return errors.New("blob writer already finished")
	}
	w.done = true
	if err := w.us.Close(); err != nil {
		// The files document was not written: the chunks are orphans
		// nobody reads; remove them.
		_ = w.us.Abort()
		return fmt.Errorf("commit gridfs blob: %w", err)
	}
	return nil
}

func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	return w.us.Abort()
}

type fileDoc struct {
	Length    int64 `bson:"length"`
	ChunkSize int32 `bson:"chunkSize"`
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, tenant, id string) (blob.Blob, error) {
	k, err := key(tenant, id)
	if err != nil {
		return nil, err
	}
	var fd fileDoc
	err = s.bucket.GetFilesCollection().FindOne(ctx, bson.D{{Key: "_id", Value: k}}).Decode(&fd)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, blob.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open gridfs blob: %w", err)
	}
	if fd.ChunkSize <= 0 || fd.Length < 0 {
		return nil, fmt.Errorf("open gridfs blob %s: bad files document (length %d, chunk size %d)", k, fd.Length, fd.ChunkSize)
	}
	return &reader{ctx: ctx, chunks: s.bucket.GetChunksCollection(), id: k, size: fd.Length, chunkSize: int64(fd.ChunkSize)}, nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, tenant, id string) error {
	k, err := key(tenant, id)
	if err != nil {
		return nil
	}
	err = s.bucket.Delete(ctx, k)
	if errors.Is(err, mongo.ErrFileNotFound) {
		// Chunks of an upload whose files document was never written.
		_, err = s.bucket.GetChunksCollection().DeleteMany(ctx, bson.D{{Key: "files_id", Value: k}})
	}
	if err != nil {
		return fmt.Errorf("delete gridfs blob: %w", err)
	}
	return nil
}

// reader reads a blob from any offset: a Seek only moves the position, and
// the next Read queries the chunks from the one holding it.
type reader struct {
	ctx       context.Context
	chunks    *mongo.Collection
	id        string
	size      int64
	chunkSize int64

	pos   int64
	cur   *mongo.Cursor
	next  int64 // number of the chunk cur returns next
	buf   []byte
	skip  int64 // bytes of the next chunk before pos
	close bool
}

func (r *reader) Size() int64            { return r.size }
func (r *reader) Content() io.ReadSeeker { return r }

func (r *reader) Close() error {
	r.close = true
	return r.reset()
}

func (r *reader) reset() error {
	r.buf = nil
	if r.cur == nil {
		return nil
	}
	err := r.cur.Close(context.WithoutCancel(r.ctx))
	r.cur = nil
	return err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	abs, err := blob.Position(r.pos, r.size, offset, whence)
	if err != nil {
		return 0, err
	}
	if abs != r.pos {
		_ = r.reset()
		r.pos = abs
	}
	return abs, nil
}

type chunkDoc struct {
	N    int64  `bson:"n"`
	Data []byte `bson:"data"`
}

func (r *reader) Read(p []byte) (int, error) {
	if r.close {
		return 0, errors.New("gridfs blob: read after close")
	}
	if r.pos >= r.size {
		return 0, io.EOF
	}
	if len(r.buf) == 0 {
		if r.cur == nil {
			first := r.pos / r.chunkSize
			cur, err := r.chunks.Find(r.ctx,
				bson.D{{Key: "files_id", Value: r.id}, {Key: "n", Value: bson.D{{Key: "$gte", Value: first}}}},
				options.Find().SetSort(bson.D{{Key: "n", Value: 1}}).SetBatchSize(4))
			if err != nil {
				return 0, fmt.Errorf("read gridfs blob: %w", err)
			}
			r.cur, r.next, r.skip = cur, first, r.pos-first*r.chunkSize
		}
		if !r.cur.Next(r.ctx) {
			err := r.cur.Err()
			if err == nil {
				err = fmt.Errorf("chunk %d missing", r.next)
			}
			return 0, fmt.Errorf("read gridfs blob %s: %w", r.id, err)
		}
		var c chunkDoc
		if err := r.cur.Decode(&c); err != nil {
			return 0, fmt.Errorf("read gridfs blob %s: %w", r.id, err)
		}
		want := min(r.chunkSize, r.size-r.next*r.chunkSize)
		if c.N != r.next || int64(len(c.Data)) != want || r.skip > want {
			return 0, fmt.Errorf("read gridfs blob %s: chunk %d is not the one expected (%d, %d bytes)", r.id, c.N, r.next, len(c.Data))
		}
		r.buf, r.skip = c.Data[r.skip:], 0
		r.next++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.pos += int64(n)
	return n, nil
}
