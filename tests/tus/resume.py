"""A real tus client (tuspy) against the service: one chunk, then the client is gone; a new
client resumes the same upload from the offset the server reports, and finishes it.

    resume.py ENDPOINT BEARER_TOKEN FILE FIRST_CHUNK_BYTES
"""
import os
import sys

from tusclient import client

endpoint, token, path, first_chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
headers = {"Authorization": f"Bearer {token}"}
name = os.path.basename(path)

first = client.TusClient(endpoint, headers=headers).uploader(
    file_path=path, chunk_size=first_chunk, metadata={"filename": name}
)
first.upload_chunk()
url = first.url
print(f"created {url}, sent {first.offset} bytes")
del first  # cut off: nothing of this client is used again

resumed = client.TusClient(endpoint, headers=headers).uploader(file_path=path, url=url, chunk_size=64 * 1024)
print(f"resumed at {resumed.offset}")
resumed.upload()
print(f"finished at {resumed.offset} of {os.path.getsize(path)}")
assert resumed.offset == os.path.getsize(path)
