package mongostore

import (
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readconcern"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// collectionOptions are the read and write concerns of every collection of
// the store (devices, tokens, discovery profiles), whatever the connection
// string says (docs/operations.md, "Clustered dependencies"):
//
//   - write concern majority (journaled on each member, MongoDB's
//     writeConcernMajorityJournalDefault): a write the API acknowledged (a
//     device's parameters, a token created or revoked, a connection-request
//     credential sealed) survives the primary's loss; w:1 would let a
//     failover roll it back;
//   - read concern majority, from the primary: a read never returns a
//     write that a failover could still roll back, and the compare-and-set
//     of device updates reads the version it writes against from the node
//     that takes the write; a token revoked is refused by every replica's
//     reader at once (the secondaries' lag would let it through).
//
// Reading from the primary costs the replicas nothing but standby; a
// deployment wanting reads spread over secondaries trades these
// guarantees away and is not supported.
func collectionOptions() *options.CollectionOptionsBuilder {
	return options.Collection().
		SetWriteConcern(writeconcern.Majority()).
		SetReadConcern(readconcern.Majority()).
		SetReadPreference(readpref.Primary())
}
