package files

import (
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// mongoDatabaseOptions are the read and write concerns of the MongoDB file
// store's database (the files collection and the GridFS bucket), whatever
// the connection string says (docs/operations.md, "Clustered
// dependencies"): write concern majority, so that a file whose upload was
// acknowledged, record and chunks, survives the primary's loss, and read
// concern majority from the primary, so that a CPE is never served a file a
// failover could still roll back.
func mongoDatabaseOptions() *options.DatabaseOptionsBuilder {
	return options.Database().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Majority()).
		SetReadPreference(readpref.Primary())
}
