-- Users, the follow graph, photos, likes and comments of one logical shard.
-- Every id defaults to this shard's next_id(), so the shard is decodable from the id.

CREATE TABLE {schema}.users (
    id            bigint PRIMARY KEY DEFAULT {schema}.next_id(),
    username      text NOT NULL UNIQUE,  -- usernames hash to this shard: unique here = unique globally
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Both halves of a follow edge: `following` on the follower's shard, `followers` on the followee's.
CREATE TABLE {schema}.following (
    user_id    bigint NOT NULL,
    target_id  bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, target_id)
);
CREATE TABLE {schema}.followers (
    user_id     bigint NOT NULL,
    follower_id bigint NOT NULL,  -- the fan-out reads these in chunks, keyset-paginated on the PK
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, follower_id)
);

CREATE TABLE {schema}.photos (
    id            bigint PRIMARY KEY DEFAULT {schema}.next_id(),
    user_id       bigint NOT NULL,
    image_key     text NOT NULL,
    thumb_key     text,            -- set by the thumbnail task
    caption       text NOT NULL DEFAULT '',
    width         integer NOT NULL,
    height        integer NOT NULL,
    like_count    integer NOT NULL DEFAULT 0,
    comment_count integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX photos_user_id ON {schema}.photos (user_id, id DESC);

-- Likes and comments live on their photo's shard: a like and its count change are one statement.
CREATE TABLE {schema}.likes (
    id         bigint NOT NULL DEFAULT {schema}.next_id(),
    photo_id   bigint NOT NULL,
    user_id    bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (photo_id, user_id)
);

CREATE TABLE {schema}.comments (
    id         bigint PRIMARY KEY DEFAULT {schema}.next_id(),
    photo_id   bigint NOT NULL,
    user_id    bigint NOT NULL,
    username   text NOT NULL,  -- the author's; usernames never change, so a copy saves a cross-shard read
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_photo_id ON {schema}.comments (photo_id, id);
