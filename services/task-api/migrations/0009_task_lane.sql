-- Tasks of the scheduled queues and batches run in the bulk lane: their steps give way
-- to the steps of tasks people asked for.
ALTER TABLE tasks ADD COLUMN lane text NOT NULL DEFAULT 'interactive' CHECK (lane IN ('interactive', 'bulk'));
