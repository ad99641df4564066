#!/bin/sh
# Lambda Web Adapter entry (Handler: run.sh): uvicorn serves this family's app on $PORT and the
# adapter streams each response back through API Gateway as it is written.
cd "$(dirname "$0")" || exit 1
export PYTHONPATH="/opt/python${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m uvicorn main:app --factory --host 127.0.0.1 --port "${PORT:-8080}" \
    --log-level warning --no-access-log --timeout-keep-alive 75
