package mongostore

import (
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// collectionOptions are the read and write concerns of the tasks
// collection, whatever the connection string says (docs/operations.md,
// "Clustered dependencies"):
//
//   - write concern majority (journaled on each member, MongoDB's
//     writeConcernMajorityJournalDefault): a task CreateTask acknowledged,
//     and every state change after it, survives the primary's loss; with
//     w:1 a failover could roll back a task's "done" and run it again, or
//     lose a task the caller holds the id of;
//   - read concern majority, from the primary: the compare-and-set that
//     claims and ends tasks reads the version it writes against from the
//     node that takes the write, and never acts on a state a failover
//     could roll back; the idempotency lookup sees every task created.
func collectionOptions() *options.CollectionOptionsBuilder {
	return options.Collection().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Majority()).
		SetReadPreference(readpref.Primary())
}
