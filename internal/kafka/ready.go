package kafka

import (
	"context"
	"fmt"
	"strings"
)

// GroupJoined is a readiness check: nil when group is Stable with at
// least one active member whose client id is clientID. Replicas of a
// stage share their client id, so while one replica is still joining a
// group that another already formed it reports ready a little early; the
// stages combine it with their own "member running" flag.
func GroupJoined(ctx context.Context, o GroupOffsets, group, clientID string) error {
	info, err := o.DescribeGroup(ctx, group)
	if err != nil {
		return fmt.Errorf("describe group %s: %w", group, err)
	}
	if info.State != "Stable" {
		return fmt.Errorf("group %s not joined: state %s", group, info.State)
	}
	for _, m := range info.Members {
		if strings.HasPrefix(m, clientID+"@") {
			return nil
		}
	}
	return fmt.Errorf("group %s not joined: no member with client id %s among %v", group, clientID, info.Members)
}
