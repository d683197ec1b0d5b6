/* The fleet v1 HTTP API (units, state, machines, discovery) over the scheduling keys of
 * engine/model.h. Placeholder until the API lands: every call answers 501. */
#include "api/api.h"
#include "http/web.h"

void api_fleet_handle(struct api *a, struct web_req *req, const char *rest)
{
	static const char body[] = "{\"error\":{\"code\":501,\"message\":\"not implemented\"}}\n";

	(void)a;
	(void)rest;
	api_respond_plain(req, 501, NULL, 0, "application/json", body, sizeof(body) - 1);
}
