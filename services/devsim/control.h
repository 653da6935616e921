/*  control: the text commands of scada-devsim's control socket.

    One request is one line of words; the answer starts with "ok" or
    "error: <reason>". DEV is a served device's name, a comma-separated list
    of them, or * for every served device. Commands:
        ping                    ok pong
        silent DEV              read requests, never answer
        refuse DEV              close the listening socket and its connections
        normal DEV              answer normally again (undoes every mode)
        delay DEV MS            answer MS ms late, in order
        exception DEV CODE      answer every request with exception CODE (1..11)
        garbage DEV             answer with malformed frames
        flap DEV UP DOWN [delay MS]
                                intermittent: answer for UP ms (MS late), then
                                silent for DOWN ms, and again
        disconnect DEV          close current connections once ("ok N" closed)
        set TAG VALUE           set a value and freeze the tag's sim ("ok VALUE")
        get TAG                 "ok VALUE"
        stats [DEV]             "ok {json}": per device counters, and totals
        help                    "ok " and the list of commands
*/
#ifndef CONTROL_H_INCLUDED
#define CONTROL_H_INCLUDED

#include "devsim.h"

//  Carry out one command. Never fails: bad input gets an "error: ..." reply.
//  Returns the reply; caller owns it (free()). NULL only when out of memory.
char *control_handle(devsim_t *self, const char *request);

#endif
