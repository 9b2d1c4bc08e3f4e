package mongopresets

import (
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// databaseOptions are the read and write concerns of every collection of
// the preset store (presets, preset_revisions, preset_sets,
// preset_secrets), whatever the connection string says
// (docs/operations.md, "Clustered dependencies"): write concern majority,
// so that a preset or secret the API acknowledged survives the primary's
// loss, and read concern majority from the primary, so that no session
// provisions from a preset revision a failover could still roll back.
func databaseOptions() *options.DatabaseOptionsBuilder {
	return options.Database().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Majority()).
		SetReadPreference(readpref.Primary())
}
