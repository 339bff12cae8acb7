#!/bin/bash
# usage: smtpab.sh MAILWIRE...
# For each binary in turn (list them alternated): a fresh server, one account with the inbox
# agent, smtp-source -d -s 32 sending 20,000 messages; prints msgs/s and server CPU per message.
. "$(dirname "$0")/lib.sh"
for MW in "$@"; do
  D=$(mktemp -d)
  mw_start $MW $D 127.0.0.1:28180 127.0.0.1:28125
  mw_account 127.0.0.1:28180
  C0=$(cpu $SPID); T0=$(date +%s.%N)
  /usr/sbin/smtp-source -d -l 1000 -m 20000 -s 32 -f a@example.com -t agent@localhost 127.0.0.1:28125
  T1=$(date +%s.%N); C1=$(cpu $SPID)
  python3 -c "print('$MW', 'msgs/s %.0f'%(20000/($T1-$T0)), 'server CPU us/msg %.0f'%(($C1-$C0)*10000/20000))"
  mw_stop $D
done
