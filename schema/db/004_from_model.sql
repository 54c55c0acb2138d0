-- Trainyard database, version 4: a model may start from the weights of
-- another model of the same account and task.
--
-- from_model_id is NULL for a model trained from scratch. Otherwise every
-- fresh start of the model (not a resume) passes the newest checkpoint of
-- that model to train as pretrained=; the backend finds that file from
-- the sessions table, never from a request.
ALTER TABLE models ADD COLUMN from_model_id INTEGER REFERENCES models(id);
