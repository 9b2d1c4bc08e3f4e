//go:build tools

package deploy

import (
	_ "github.com/compose-spec/compose-go/v2/loader"
	_ "github.com/google/go-containerregistry/pkg/v1/mutate"
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "k8s.io/api/apps/v1"
	_ "sigs.k8s.io/yaml"
)
