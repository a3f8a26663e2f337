# An admin shell left open on a family's board logs itself out after 15
# idle minutes (DevSec os_hardening, lynis SHLL-6220); readonly so a
# session cannot turn it off.
TMOUT=900
readonly TMOUT
export TMOUT
