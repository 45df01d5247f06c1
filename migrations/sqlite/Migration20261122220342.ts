import { Migration } from '@mikro-orm/migrations';

export class Migration20261122220342 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table \`tag\` (\`id\` text not null, \`name\` text not null, primary key (\`id\`));`);
    this.addSql(`create unique index \`tag_name_unique\` on \`tag\` (\`name\`);`);

    this.addSql(`create table \`user\` (\`id\` integer not null primary key autoincrement, \`email\` text not null, \`name\` text not null, \`created_at\` datetime not null default (cast(round((julianday('now') - 2440587.5) * 86400000) as integer)), \`updated_at\` datetime not null default (cast(round((julianday('now') - 2440587.5) * 86400000) as integer)));`);
    this.addSql(`create unique index \`user_email_unique\` on \`user\` (\`email\`);`);

    this.addSql(`create table \`user_email\` (\`id\` integer not null primary key autoincrement, \`address\` text not null, \`owner_id\` integer not null, constraint \`user_email_owner_id_foreign\` foreign key(\`owner_id\`) references \`user\`(\`id\`) on delete cascade on update cascade);`);
    this.addSql(`create unique index \`user_email_address_unique\` on \`user_email\` (\`address\`);`);
    this.addSql(`create index \`user_email_owner_id_index\` on \`user_email\` (\`owner_id\`);`);

    this.addSql(`create table \`user_user_email_primary\` (\`user_id\` integer not null, \`user_email_id\` integer not null, \`created_at\` datetime not null default (cast(round((julianday('now') - 2440587.5) * 86400000) as integer)), \`updated_at\` datetime not null default (cast(round((julianday('now') - 2440587.5) * 86400000) as integer)), constraint \`user_user_email_primary_user_id_foreign\` foreign key(\`user_id\`) references \`user\`(\`id\`) on delete cascade on update cascade, constraint \`user_user_email_primary_user_email_id_foreign\` foreign key(\`user_email_id\`) references \`user_email\`(\`id\`) on delete cascade on update cascade, primary key (\`user_id\`));`);
    this.addSql(`create index \`user_user_email_primary_user_id_index\` on \`user_user_email_primary\` (\`user_id\`);`);
    this.addSql(`create index \`user_user_email_primary_user_email_id_index\` on \`user_user_email_primary\` (\`user_email_id\`);`);

    this.addSql(`create table \`follow\` (\`id\` integer not null primary key autoincrement, \`user_id\` integer not null, \`tag_id\` text not null, constraint \`follow_user_id_foreign\` foreign key(\`user_id\`) references \`user\`(\`id\`) on update cascade, constraint \`follow_tag_id_foreign\` foreign key(\`tag_id\`) references \`tag\`(\`id\`) on update cascade);`);
    this.addSql(`create index \`follow_user_id_index\` on \`follow\` (\`user_id\`);`);
    this.addSql(`create index \`follow_tag_id_index\` on \`follow\` (\`tag_id\`);`);
    this.addSql(`create unique index \`follow_user_id_tag_id_unique\` on \`follow\` (\`user_id\`, \`tag_id\`);`);

    this.addSql(`create trigger "user_user_email_primary_trigger_insert" before insert on "user_user_email_primary" for each row when exists (select 1 from "user_email" where "id" = new."user_email_id" and "owner_id" is not new."user_id") begin select raise(abort, 'FOREIGN KEY constraint failed: The target is not affiliated with this parent'); end;`);
    this.addSql(`create trigger "user_user_email_primary_trigger_update" before update on "user_user_email_primary" for each row when exists (select 1 from "user_email" where "id" = new."user_email_id" and "owner_id" is not new."user_id") begin select raise(abort, 'FOREIGN KEY constraint failed: The target is not affiliated with this parent'); end;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists \`follow\`;`);

    this.addSql(`drop table if exists \`user_user_email_primary\`;`);

    this.addSql(`drop table if exists \`user_email\`;`);

    this.addSql(`drop table if exists \`user\`;`);

    this.addSql(`drop table if exists \`tag\`;`);
  }

}
