package cls_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/auditpipe/auditpipe/consumer/sink/cls"
	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
)

func newAPI(t *testing.T) (*clslocal.ManagementAPI, string) {
	api := clslocal.NewManagementAPI()
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	return api, strings.TrimPrefix(hs.URL, "http://")
}

func provisioner(t *testing.T, endpoint string) *cls.Provisioner {
	p, err := cls.NewProvisioner(cls.ProvisionConfig{SecretID: "AKID", SecretKey: "k", Region: "ap-guangzhou",
		Endpoint: endpoint, Scheme: "HTTP"}, nil)
	require.NoError(t, err)
	return p
}

func TestProvisionCreatesOnceThenFinds(t *testing.T) {
	api, endpoint := newAPI(t)
	ctx := context.Background()
	id, err := provisioner(t, endpoint).EnsureTopic(ctx, "audit", "prod-1")
	require.NoError(t, err)
	require.Equal(t, "tp-prod-1", id)
	require.Equal(t, 1, api.Calls("CreateLogset"))
	require.Equal(t, 1, api.Calls("CreateTopic"))
	require.Equal(t, 1, api.Calls("CreateIndex"))
	raw, ok := api.Index("tp-prod-1")
	require.True(t, ok)
	var rule struct {
		FullText struct{ CaseSensitive bool }
		KeyValue struct {
			KeyValues []struct {
				Key   string
				Value struct{ Type string }
			}
		}
	}
	require.NoError(t, json.Unmarshal(raw, &rule))
	types := map[string]string{}
	for _, kv := range rule.KeyValue.KeyValues {
		types[kv.Key] = kv.Value.Type
	}
	require.Equal(t, "text", types["objectRef.resource"])
	require.Equal(t, "long", types["responseStatus.code"])
	require.Len(t, types, len(cls.AuditIndexKeys))

	// A second replica (a fresh provisioner) finds everything.
	id2, err := provisioner(t, endpoint).EnsureTopic(ctx, "audit", "prod-1")
	require.NoError(t, err)
	require.Equal(t, id, id2)
	require.Equal(t, 1, api.Calls("CreateTopic"))
	// A second cluster in the same logset: the logset is reused, and a
	// logset whose name merely contains "audit" is not mistaken for it.
	api.AddLogset("audit-old", "ls-other")
	_, err = provisioner(t, endpoint).EnsureTopic(ctx, "audit", "prod-2")
	require.NoError(t, err)
	require.Equal(t, 1, api.Calls("CreateLogset"))
	tid, ok := api.Topic("ls-audit", "prod-2")
	require.True(t, ok)
	require.Equal(t, "tp-prod-2", tid)
}

func TestProvisionRaceAndErrors(t *testing.T) {
	api, endpoint := newAPI(t)
	ctx := context.Background()
	api.RaceNextCreateTopic()
	id, err := provisioner(t, endpoint).EnsureTopic(ctx, "audit", "dev-1")
	require.NoError(t, err)
	require.Equal(t, "tp-theirs", id, "the conflict resolves to the other creator's topic")
	require.Equal(t, 0, api.Calls("CreateIndex"), "the creator makes the index")

	api.FailCreateTopic("LimitExceeded.Topic")
	_, err = provisioner(t, endpoint).EnsureTopic(ctx, "audit", "dev-2")
	require.ErrorContains(t, err, "LimitExceeded.Topic")
	require.ErrorContains(t, err, `topic "dev-2" in logset "audit"`)
}
