"""Images on disk: from a path in a job file to what the provider receives.

- `formats`: what a file's first bytes say it is, and how far its shape is from the video's
  (pure);
- `references`: which entries of `images` name a local file, and which file (pure);
- `files`: a local image checked at load (exists, really PNG/JPEG/WebP, size, pixels, EXIF
  orientation), scaled down into a content-addressed cache when too big;
- `bucket`: an S3-compatible bucket that holds each image once, under its sha256;
- `sending`: the image as the relay wants it (data: URI, base64, or a link), checked against
  the hash taken at load.

A .zip of a job file and its images is unpacked by `intake.archive`.
"""
