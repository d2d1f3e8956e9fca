package kafkago

import (
	"context"
	"fmt"
	"sort"

	kgo "github.com/segmentio/kafka-go"
)

// ListGroups returns the ids of the cluster's consumer groups, sorted. The
// request goes to every broker (each knows the groups it coordinates).
func (r *Reader) ListGroups(ctx context.Context) ([]string, error) {
	if ctx.Err() == nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, adminTimeout)
		defer cancel()
	}
	res, err := r.client.ListGroups(ctx, &kgo.ListGroupsRequest{})
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("list consumer groups: %w", res.Error)
	}
	ids := make([]string, 0, len(res.Groups))
	for _, g := range res.Groups {
		ids = append(ids, g.GroupID)
	}
	sort.Strings(ids)
	return ids, nil
}
