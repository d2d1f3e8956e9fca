package fleet

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"

	"github.com/auditpipe/auditpipe/internal/audittest"
)

// webhookBackend is kube-apiserver's audit webhook backend.
type webhookBackend = audit.Backend

// apiserver returns cluster's apiserver: a webhook backend per producer,
// producer preferred first, each configured by the kubeconfig that
// `producer kubeconfig` prints for the cluster (server CA, client
// certificate with CN = cluster id).
func (f *fleet) apiserver(t *testing.T, cluster string, preferred int) *apiserver {
	t.Helper()
	l := &apiserver{cluster: cluster, sent: map[identity]bool{}, acked: map[identity]bool{}}
	for j := range f.producers {
		p := f.producers[(preferred+j)%len(f.producers)]
		out, err := exec.Command(f.bins["producer"], "kubeconfig", "--server", p.webhookURL, "--cluster", cluster,
			"--ca", filepath.Join(f.pki, "ca.crt"),
			"--client-cert", filepath.Join(f.pki, "client-"+cluster+".crt"),
			"--client-key", filepath.Join(f.pki, "client-"+cluster+".key")).Output()
		require.NoError(t, err, "producer kubeconfig for %s", cluster)
		path := writeFile(t, filepath.Join(f.dir, fmt.Sprintf("kubeconfig-%s-%s", cluster, p.name)), string(out))
		l.backends = append(l.backends, audittest.WebhookBackendFromKubeconfig(t, path, audittest.ModeBlocking))
	}
	return l
}

// events returns n requests of cluster from sequence number seq on: each
// a ResponseComplete event, every fourth also its RequestReceived stage
// (same auditID: the store keys on the stage too).
func events(cluster string, seq, n int) ([]*auditinternal.Event, []identity) {
	var evs []*auditinternal.Event
	var ids []identity
	now := metav1.NewMicroTime(time.Now().UTC())
	for i := seq; i < seq+n; i++ {
		id := fmt.Sprintf("%s-%07d", cluster, i)
		stages := []auditinternal.Stage{auditinternal.StageResponseComplete}
		if i%4 == 0 {
			stages = []auditinternal.Stage{auditinternal.StageRequestReceived, auditinternal.StageResponseComplete}
		}
		for _, st := range stages {
			e := &auditinternal.Event{
				Level:      auditinternal.LevelMetadata,
				AuditID:    types.UID(id),
				Stage:      st,
				RequestURI: "/api/v1/namespaces/fleet/configmaps",
				Verb:       "create",
				User:       authnv1.UserInfo{Username: "system:serviceaccount:fleet:load"},
				SourceIPs:  []string{"10.0.0.1"},
				ObjectRef: &auditinternal.ObjectReference{Resource: "configmaps", Namespace: "fleet",
					Name: id, APIVersion: "v1"},
				RequestReceivedTimestamp: now,
				StageTimestamp:           now,
			}
			if st == auditinternal.StageResponseComplete {
				e.ResponseStatus = &metav1.Status{Code: 201}
			}
			evs = append(evs, e)
			ids = append(ids, identity{Cluster: cluster, AuditID: id, Stage: string(st)})
		}
	}
	return evs, ids
}

// quietAuditErrors keeps the first line of each klog entry: the apiserver's
// webhook backend logs every event of a failed request (a kill makes
// hundreds), and the first line names the plugin, the count and the error.
func quietAuditErrors(t *testing.T) {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	require.NoError(t, fs.Parse([]string{"-logtostderr=false", "-stderrthreshold=FATAL"}))
	// An error is written to the INFO, WARNING and ERROR outputs: one of
	// them shows it.
	klog.SetOutputBySeverity("INFO", io.Discard)
	klog.SetOutputBySeverity("WARNING", io.Discard)
	klog.SetOutputBySeverity("ERROR", firstLines{os.Stderr})
	t.Cleanup(func() {
		_ = fs.Set("logtostderr", "true")
		_ = fs.Set("stderrthreshold", "ERROR")
	})
}

type firstLines struct{ w io.Writer }

func (f firstLines) Write(p []byte) (int, error) {
	line, _, _ := bytes.Cut(p, []byte("\n"))
	if _, err := f.w.Write(append(line[:len(line):len(line)], '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}
