/* What hutch-init (runtime/pid1.c) and an instance's supervisor (instanced/supervise.c)
 * agree on: the supervisor's stop signal carries this value (queued with SI_QUEUE), so that
 * hutch-init tells `instance stop` from any other signal that reaches it (a reload's SIGHUP).
 * No includes: pid1.c is built without libc. */
#ifndef HUTCH_PID1_H
#define HUTCH_PID1_H
#define HUTCH_INIT_STOP_MARK 0x73746f70 /* "stop" */
#endif
