"""Detection and instance runs as the tools see them: evaluate (COCO AP, PR curves, hits and
misses), predict (boxes on a user's image, COCO results) and their pictures."""
