/* The Hapnd event format of the logic layer (logic/logic.h, struct logic_event_format): how
 * reducers and projections uploaded through the Hapnd dialect see events. main registers it
 * as "hapnd"; the dialect deploys its components with that eventFormat.
 *
 *   render  a stored event as Hapnd shows it (hapnd_event_json: eventId, aggregateId,
 *           aggregateType, eventType, data, version, position, timestamp, metadata,
 *           correlationId, causationId);
 *   parse   an event a command handler returned, {"aggregateId", "aggregateType"?,
 *           "eventType", "data", "metadata"?, "correlationId"?, "causationId"?}, into a native
 *           event object with its stream (Hapnd has no command handlers; native ones deployed
 *           with this format may return such events).
 *
 * Pure: any thread. */
#ifndef DIALECT_HAPND_FORMAT_H
#define DIALECT_HAPND_FORMAT_H

#include "logic/logic.h"

#define HAPND_FORMAT_NAME "hapnd"

extern const struct logic_event_format hapnd_format;

#endif
