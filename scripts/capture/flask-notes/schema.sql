CREATE TABLE IF NOT EXISTS notes (
    id         bigserial PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
