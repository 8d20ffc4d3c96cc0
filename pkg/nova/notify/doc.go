// Package notify reads Nova's versioned notifications, one AMQP message body
// at a time, into the moves of VMs between compute hosts: the first witness
// of where each VM has run.
//
// Nova sends them through oslo.messaging ([notifications]
// notification_format = versioned, the default since Pike) on the topic
// versioned_notifications, which the rabbit driver publishes to the control
// exchange (nova) with the routing keys versioned_notifications.info and
// versioned_notifications.error. The messagingv2 driver wraps each message
// in oslo's envelope 2.0, {"oslo.version": "2.0", "oslo.message": "<JSON
// text>"}; the older messaging driver does not; [Parse] reads both. The
// message holds message_id, publisher_id ("nova-compute:<host>"),
// event_type, priority, timestamp (UTC, "2006-01-02 15:04:05.999999"), the
// request context flattened into _context_* keys, and the payload, a Nova
// versioned object whose nova_object.data carries the instance's uuid,
// tenant_id, host, request_id and updated_at.
//
// # Which event places a VM where
//
// Each Nova operation sends several notifications; the one read as "the VM
// now runs on host H" is the one sent once the instance record names H and
// the VM runs there (nova/compute/manager.py):
//
//	event type                              op              state    Host / HostBefore
//	instance.create.end                     boot            on_host  payload host (the compute that spawned it)
//	instance.live_migration_post_dest.end   live_migration  on_host  payload host (the destination, which sends it)
//	instance.live_migration_post.end        live_migration  left     HostBefore: payload host (the source)
//	instance.resize_finish.end              resize          on_host  payload host (the destination)
//	instance.resize_confirm.end             resize          on_host  payload host; HostBefore: the sending compute (the source)
//	instance.resize_revert.end              resize_revert   on_host  payload host (the source again)
//	instance.evacuate                       evacuate        left     HostBefore: payload host (the failed host)
//	instance.rebuild.end                    rebuild         on_host  payload host (the destination of an evacuation)
//	instance.unshelve.end                   unshelve        on_host  payload host
//	instance.shelve_offload.end             shelve_offload  no_host  HostBefore: the sending compute (the payload's host is null)
//	instance.delete.end                     delete          no_host  HostBefore: payload host (none for a VM never scheduled)
//
// Why these, and not the others:
//
//   - A live migration ends on both computes. The source calls the
//     destination's post_live_migration_at_destination, which saves the
//     instance with host = destination and sends
//     instance.live_migration_post_dest.end; only then does the source send
//     instance.live_migration_post.end, from an instance object that still
//     names the source. So the destination's event comes first and is the
//     placement; the source's is read as StateLeft, and usually arrives after
//     the arrival it follows.
//   - instance.evacuate is sent by nova-api before any host is chosen, with
//     the instance still on the failed host; the destination then rebuilds
//     the VM and sends instance.rebuild.end with host = destination, under the
//     same request id. Nova's rebuild notification does not say whether it
//     was an evacuation: a rebuild.end whose host differs from the VM's last
//     recorded host, or whose request id is an evacuate's, is one.
//   - A cold migration is a resize to the same flavor, and Nova sends the same
//     notifications for both: both are OpResize. instance.resize_finish.end,
//     from the destination once it runs the VM, is the placement;
//     instance.resize_confirm.end, from the source once it has freed the VM's
//     resources there, confirms it. instance.resize.end (the source, before
//     the destination has spawned the VM) is not read.
//   - instance.resize_revert.end is sent by the source once the instance
//     names it again: the VM is back where it was (op resize_revert).
//   - instance.shelve_offload.end's instance names no host: the host that
//     sent it (publisher_id) is the one the VM left.
//
// Every other event type, Nova's unversioned (legacy) notifications
// included, is a [Skip]: well-formed, counted, and not a placement. A body
// that is not a notification, or whose fields cannot be trusted (no
// instance uuid, a host name outside Nova's characters, a body over
// [MaxBodyLen]), is an error wrapping [ErrMalformed] or [ErrTooLarge].
//
// # Identifiers and times
//
// The VM's uuid and project id are returned in ledgerfence's canonical forms
// (filter.NormalizeUUID, filter.NormalizeProjectID), so that they meet the
// regulations' subjects. The request id is the context's
// (_context_request_id), or the payload's request_id when the context has
// none; GlobalRequestID is the id a caller passed to Nova across services.
// Time is the notification's timestamp, when oslo.messaging sent it;
// UpdatedAt is the instance record's updated_at in the payload, when Nova
// last saved it.
package notify
