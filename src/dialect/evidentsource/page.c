/* The EvidentSource query builder: an HTML page whose htmx form runs queries against this
 * server, and the script it loads (htmx, served by Annals itself). */
#include "dialect/evidentsource/es_int.h"

void es_query_builder(struct gate_call *c)
{
    es_fail(c, GK_INTERNAL, "not_implemented", "not implemented yet", NULL);
}

void es_asset(struct gate_call *c)
{
    es_fail(c, GK_NOT_FOUND, "not_found", "no such file", "file");
}
