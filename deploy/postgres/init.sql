-- Runs once, when the postgres volume is created: the engine's tracker store gets its own database,
-- owned by the same role as the app's (POSTGRES_USER).
CREATE DATABASE lotse_tracker OWNER lotse;
