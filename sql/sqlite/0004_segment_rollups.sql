-- Learning per segment: when the rollup of each kind of segment began (the first start of a router
-- with that SEGMENT_BY). Its rows live in click_rollup_dims under the dimension 'segment:<traits>'.
-- FTDs of clicks from before that moment have no segment clicks to weigh against, so the engine
-- reads the segment evidence from then on. Times in microseconds since the Unix epoch.
CREATE TABLE segment_rollups (
    dimension TEXT NOT NULL PRIMARY KEY,
    since     INTEGER NOT NULL
);
