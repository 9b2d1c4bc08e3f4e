package check

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// Helm runs the pinned helm binary with its caches and configuration in a
// directory of its own, so that nothing of the user's helm setup counts.
type Helm struct {
	Bin  string // path of the helm binary
	Home string // directory for its cache, config and data
}

func (h Helm) run(args ...string) ([]byte, error) {
	cmd := exec.Command(h.Bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(h.Home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.Home, "config"),
		"HELM_DATA_HOME="+filepath.Join(h.Home, "data"),
	)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes(), nil
}

// Lint runs helm lint --strict on the chart with the values files given.
func (h Helm) Lint(chart string, values ...string) error {
	args := []string{"lint", "--strict", chart}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	_, err := h.run(args...)
	return err
}

// Template renders the chart as release "fleetacs" in namespace
// "fleetacs" with the values files given.
func (h Helm) Template(chart string, values ...string) ([]byte, error) {
	args := []string{"template", "fleetacs", chart, "--namespace", "fleetacs"}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	return h.run(args...)
}

// scheme knows every kind the chart may render.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder decodes as the API server does under
// fieldValidation=Strict: unknown and duplicate fields are errors, field
// names are case-sensitive.
var strictDecoder = serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// Decode splits helm's output into documents and decodes each into its
// typed API object. A document of a kind the scheme lacks, a field the
// type lacks, or a value of the wrong type is an error.
func Decode(rendered []byte) ([]runtime.Object, error) {
	var objs []runtime.Object
	var errs []string
	for _, doc := range docSeparator.Split(string(rendered), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, gvk, err := strictDecoder.Decode([]byte(doc), nil, nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", sourceOf(doc), err))
			continue
		}
		if gvk.Kind == "" {
			errs = append(errs, fmt.Sprintf("%s: no kind", sourceOf(doc)))
			continue
		}
		objs = append(objs, obj)
	}
	if len(errs) > 0 {
		return objs, fmt.Errorf("%d manifests do not decode:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// sourceOf names the template a document came from (helm's "# Source:" line).
func sourceOf(doc string) string {
	for _, l := range strings.Split(doc, "\n") {
		if s, ok := strings.CutPrefix(l, "# Source: "); ok {
			return s
		}
	}
	return "manifest"
}
