package client

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

func TestSubscriptionProto(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sub      Subscription
		want     *streamerv1.Subscription
		wantCode streamerv1.ErrorCode
	}{
		{"whole collection", Subscription{ID: "s", Tenant: "t", Collection: "c"},
			&streamerv1.Subscription{SubscriptionId: "s", Tenant: "t", Collection: "c"}, 0},
		{"document id", Subscription{ID: "s", Collection: "c", DocumentID: "d1"},
			&streamerv1.Subscription{SubscriptionId: "s", Collection: "c",
				Criterion: &streamerv1.Subscription_DocumentId{DocumentId: "d1"}}, 0},
		{"cel", Subscription{ID: "s", Collection: "c", CEL: "doc.x > 1"},
			&streamerv1.Subscription{SubscriptionId: "s", Collection: "c",
				Criterion: &streamerv1.Subscription_Cel{Cel: "doc.x > 1"}}, 0},
		{"filters with list and int values", Subscription{ID: "s", Collection: "c", Filters: []Filter{
			{Field: "a.b", Op: "==", Value: 3}, {Field: "tags", Op: "array-contains-any", Value: []any{"x", nil}},
		}}, &streamerv1.Subscription{SubscriptionId: "s", Collection: "c",
			Criterion: &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{Filters: []*streamerv1.FieldFilter{
				{Field: "a.b", Op: "==", Value: structpb.NewNumberValue(3)},
				{Field: "tags", Op: "array-contains-any", Value: structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
					structpb.NewStringValue("x"), structpb.NewNullValue()}})},
			}}}}, 0},
		{"empty filter list is its own criterion", Subscription{ID: "s", Collection: "c", Filters: []Filter{}},
			&streamerv1.Subscription{SubscriptionId: "s", Collection: "c",
				Criterion: &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{}}}, 0},
		{"missing id", Subscription{Collection: "c"}, nil, streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"two criteria", Subscription{ID: "s", Collection: "c", DocumentID: "d", CEL: "true"}, nil,
			streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT},
		{"value without JSON form", Subscription{ID: "s", Collection: "c", Filters: []Filter{{Field: "a", Op: "==", Value: struct{}{}}}},
			nil, streamerv1.ErrorCode_ERROR_CODE_INVALID_FILTER},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.sub.proto()
			if tc.wantCode != 0 {
				var se *SubscribeError
				if !errors.As(err, &se) || se.Code != tc.wantCode {
					t.Fatalf("err = %v, want *SubscribeError with %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}
