"""The Celery worker process: thin tasks that claim a job row and submit it to the provider.

It lands with the submission engine; the store, loader and checks it builds on are in
`veobatch`.
"""
