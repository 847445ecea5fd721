"""Jobs: validation of a request, the job service both APIs call, and the runners that drive each job."""
