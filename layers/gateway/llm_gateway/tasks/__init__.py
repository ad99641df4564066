"""Asynchronous tasks (Midjourney, API.md 5.2): their lifecycle, callbacks, webhooks and stored files.

- `lifecycle`: the Task as clients see it, and what an upstream's view of a task changes in ours;
- `service`: submission (admission, upstream call, the task stored with its reservation), queries
  (refreshing a stale task from its upstream), callbacks, and what follows a task's step forward
  (settlement once it is final, the stored image, the webhook);
- `webhooks`: delivery of a task's changes to its `webhook`, in order, retried, off the request;
- `files`: the gateway's own storage of task images (a folder, or S3) and their variants.
"""
