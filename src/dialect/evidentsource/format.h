/* The CloudEvents event format of the logic layer (logic/logic.h, struct logic_event_format):
 * how EvidentSource's state views and state changes see and return events. main registers it
 * as "cloudevents"; the dialect deploys its components with that eventFormat.
 *
 *   render     a stored event as a CloudEvent (es_event: the attributes as sent, data,
 *              revision, recordedtime);
 *   parse      a CloudEvent a state change returned into a native event object with its
 *              stream (es_ce_to_native); specversion "1.0", a fresh id (a UUID) and the state
 *              change's name as source are filled in when missing;
 *   filter     what ctx.query takes: a selector (flat or nested, es_selector) or an array of
 *              them (any of);
 *   condition  a constraint as {"query":{"selector"},"min"?,"max"?} (L, the newest matching
 *              revision, min <= L <= max): {"type":"min_revision","revision","selector"?},
 *              {"type":"min"|"max"|"max_revision","selector","revision"}, {"type":"range",
 *              "selector","min","max"}, {"type":"fail_if_events_match","selector","after"?}
 *              (max: after, default 0), EvidentDB's stream_exists, stream_does_not_exist,
 *              stream_max_revision, subject_* and subject_*_on_stream ({stream?, subject?,
 *              revision?}: min 1, max 0, max revision); a constraint without "type" is taken
 *              as a native condition as it is.
 *
 * Any thread; parse reads the clock and randomness only for a missing id. */
#ifndef DIALECT_EVIDENTSOURCE_FORMAT_H
#define DIALECT_EVIDENTSOURCE_FORMAT_H

#include "logic/logic.h"

#define ES_FORMAT_NAME "cloudevents"

extern const struct logic_event_format es_cloudevents_format;

#endif
