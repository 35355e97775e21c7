#!/bin/sh
# The commands both CI examples run (github-actions.yml, gitlab-ci.yml), and the test runs too
# (tests/gitops/test_ci_example.py): validate with annotations, then plan against the host's
# snapshot as a pull-request comment.
#
#   ci/plan.sh MANIFESTS SNAPSHOT COMMENT.md      (copied from examples/ci/ into the repository)
#
# Exit status: 0 the plan can be applied as it is (it may have changes); 1 the manifests are
# invalid, or the plan refuses something (blocked, conflict): the check fails. The comment is
# written in every case where a plan could be made.
set -u
manifests=$1 snapshot=$2 comment=$3
reconciler=${RECONCILER:-reconciler}

status=0
# Annotations on the pull request's files (GitHub); plain lines in other CI logs.
format=text
[ -n "${GITHUB_ACTIONS:-}" ] && format=github
"$reconciler" validate --format "$format" "$manifests" || status=1

"$reconciler" plan --snapshot "$snapshot" --format markdown "$manifests" >"$comment"
code=$?
[ "$code" -ne 0 ] && status=1
cat "$comment"
exit "$status"
