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
 *   condition  a constraint: es_constraint's forms (min_revision, min, max, max_revision,
 *              range, fail_if_events_match, EvidentDB's stream_* and subject_*) as the native
 *              {"query":{"selector"?},"min"?,"max"?}; a constraint without "type" is taken as
 *              a native condition as it is.
 *
 * Any thread; parse reads the clock and randomness only for a missing id. */
#ifndef DIALECT_EVIDENTSOURCE_FORMAT_H
#define DIALECT_EVIDENTSOURCE_FORMAT_H

#include "logic/logic.h"

#define ES_FORMAT_NAME "cloudevents"

extern const struct logic_event_format es_cloudevents_format;

#endif
