import { Migration } from '@mikro-orm/migrations';

export class Migration20261122214719 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "tag" ("id" uuid not null, "name" varchar(255) not null, constraint "tag_pkey" primary key ("id"));`);
    this.addSql(`alter table "tag" add constraint "tag_name_unique" unique ("name");`);

    this.addSql(`create table "user" ("id" serial primary key, "email" varchar(255) not null, "name" varchar(255) not null, "created_at" timestamptz not null default current_timestamp, "updated_at" timestamptz not null default current_timestamp);`);
    this.addSql(`alter table "user" add constraint "user_email_unique" unique ("email");`);

    this.addSql(`create table "user_email" ("id" serial primary key, "address" varchar(255) not null, "owner_id" int not null);`);
    this.addSql(`alter table "user_email" add constraint "user_email_address_unique" unique ("address");`);

    this.addSql(`create table "user_user_email_primary" ("user_id" int not null, "user_email_id" int not null, "created_at" timestamptz not null default current_timestamp, "updated_at" timestamptz not null default current_timestamp, constraint "user_user_email_primary_pkey" primary key ("user_id"));`);

    this.addSql(`create table "follow" ("id" serial primary key, "user_id" int not null, "tag_id" uuid not null);`);
    this.addSql(`alter table "follow" add constraint "follow_user_id_tag_id_unique" unique ("user_id", "tag_id");`);

    this.addSql(`alter table "user_email" add constraint "user_email_owner_id_foreign" foreign key ("owner_id") references "user" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "user_user_email_primary" add constraint "user_user_email_primary_user_id_foreign" foreign key ("user_id") references "user" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "user_user_email_primary" add constraint "user_user_email_primary_user_email_id_foreign" foreign key ("user_email_id") references "user_email" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "follow" add constraint "follow_user_id_foreign" foreign key ("user_id") references "user" ("id") on update cascade;`);
    this.addSql(`alter table "follow" add constraint "follow_tag_id_foreign" foreign key ("tag_id") references "tag" ("id") on update cascade;`);

    this.addSql(`create or replace function "user_user_email_primary_validate"() returns trigger language plpgsql as \$\$ begin if exists (select 1 from "user_email" where "id" = new."user_email_id" and "owner_id" is distinct from new."user_id") then raise foreign_key_violation using message = 'The target is not affiliated with this parent'; end if; return new; end \$\$;`);
    this.addSql(`create trigger "user_user_email_primary_trigger" before insert or update on "user_user_email_primary" for each row execute function "user_user_email_primary_validate"();`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "follow" drop constraint "follow_tag_id_foreign";`);

    this.addSql(`alter table "user_email" drop constraint "user_email_owner_id_foreign";`);

    this.addSql(`alter table "user_user_email_primary" drop constraint "user_user_email_primary_user_id_foreign";`);

    this.addSql(`alter table "follow" drop constraint "follow_user_id_foreign";`);

    this.addSql(`alter table "user_user_email_primary" drop constraint "user_user_email_primary_user_email_id_foreign";`);

    this.addSql(`drop table if exists "tag" cascade;`);

    this.addSql(`drop table if exists "user" cascade;`);

    this.addSql(`drop table if exists "user_email" cascade;`);

    this.addSql(`drop table if exists "user_user_email_primary" cascade;`);

    this.addSql(`drop table if exists "follow" cascade;`);

    this.addSql(`drop function if exists "user_user_email_primary_validate"();`);
  }

}
