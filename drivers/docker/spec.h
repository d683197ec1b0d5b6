/* The docker driver's translation of a unit's options into the Engine API's container spec
 * (spec.c), and the labels that tie a container to its unit and machine. */
#ifndef FLT_DOCKER_SPEC_H
#define FLT_DOCKER_SPEC_H

struct flt_task;

#define DK_LABEL_UNIT    "io.flotilla.unit"
#define DK_LABEL_MACHINE "io.flotilla.machine"

/* [X-Flotilla] Pull=: when the image is pulled before the container is created. */
enum dk_pull { DK_PULL_MISSING, DK_PULL_ALWAYS, DK_PULL_NEVER };

/* The body of POST /containers/create from the options of t (borrowed). Returns 0 with *ret_pull,
 * *ret_body (owned) and *ret_image (owned), or -EINVAL / -ENOMEM with *ret_why (owned) saying
 * what is wrong. */
int dk_build_create(const struct flt_task *t, enum dk_pull *ret_pull, char **ret_body,
                    char **ret_image, char **ret_why);

#endif
