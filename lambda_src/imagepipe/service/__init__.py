"""The backend on AWS services: config, S3 storage, DynamoDB records, the job runner and the
API's route functions. Handlers in ``imagepipe.handlers`` wire these to Lambda events."""
