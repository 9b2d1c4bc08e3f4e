package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/lifecycle"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/campaigns"
)

// buildCampaigns builds the campaigns service (docs/campaigns.md): its
// API on the public gRPC server, and the runner, which reads the inventory
// and creates tasks through their APIs on the internal connections, signs
// firmware URLs with the files service when it runs in this process, and
// publishes campaign events on NATS.
func buildCampaigns(a *app) (lifecycle.Service, error) {
	if a.shared.tasks == nil {
		return nil, errors.New("campaigns need the tasks service: run it in this process or set -client.tasks-addr")
	}
	scfg := a.cfg.campaignsStore
	scfg.Metrics = a.clients
	if scfg.Store == campaigns.StoreSQLite && !a.flagSet["campaigns.sqlite-path"] {
		scfg.SQLitePath = a.dataPath("campaigns.db")
	}
	st, closer, err := scfg.Open()
	if err != nil {
		return nil, fmt.Errorf("campaigns store config: %w", err)
	}
	deps := campaigns.Deps{
		Store:         st,
		Close:         closer,
		Inventory:     inventoryv1.NewInventoryServiceClient(a.shared.inventory),
		Tasks:         tasksv1.NewTasksServiceClient(a.shared.tasks),
		Presets:       provisioningv1.NewPresetsServiceClient(a.shared.inventory),
		CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string {
			p, _ := apiauth.FromContext(ctx)
			return p.ID
		},
		Logger: a.logger.With("component", "campaigns"),
	}
	if a.shared.files != nil {
		deps.Files = a.shared.files
	} else {
		a.logger.Warn("no files service in this process: firmware campaigns are refused here")
	}
	if js := a.shared.js; js != nil {
		names := a.shared.busNames
		deps.Subject = func(tenant, kind, campaign string) string { return names.Event(tenant, kind, campaign) }
		deps.Publish = func(ctx context.Context, subject, msgID string, data []byte) error {
			_, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(msgID))
			return err
		}
	}
	svc, err := campaigns.New(a.cfg.campaigns, deps)
	if err != nil {
		return nil, err
	}
	svc.RegisterPublic(a.shared.public.registrar)
	a.tokensFromInventory()
	return lifecycle.Funcs{StartFunc: svc.Start, RunFunc: svc.Run}, nil
}
