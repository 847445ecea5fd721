"""Where jobs live: the job database and the job's files on disk and in S3."""
