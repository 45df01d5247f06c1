import { Migration } from '@mikro-orm/migrations';

export class Migration20261207141215 extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table \`tag\` (\`id\` varchar(36) not null, \`name\` varchar(255) not null, primary key (\`id\`)) default character set utf8mb4 engine = InnoDB;`);
    this.addSql(`alter table \`tag\` add unique \`tag_name_unique\`(\`name\`);`);

    this.addSql(`create table \`user\` (\`id\` int unsigned not null auto_increment primary key, \`email\` varchar(255) not null, \`name\` varchar(255) not null, \`created_at\` datetime(3) not null default utc_timestamp(3), \`updated_at\` datetime(3) not null default utc_timestamp(3)) default character set utf8mb4 engine = InnoDB;`);
    this.addSql(`alter table \`user\` add unique \`user_email_unique\`(\`email\`);`);

    this.addSql(`create table \`user_email\` (\`id\` int unsigned not null auto_increment primary key, \`address\` varchar(255) not null, \`owner_id\` int unsigned not null) default character set utf8mb4 engine = InnoDB;`);
    this.addSql(`alter table \`user_email\` add unique \`user_email_address_unique\`(\`address\`);`);
    this.addSql(`alter table \`user_email\` add index \`user_email_owner_id_index\`(\`owner_id\`);`);

    this.addSql(`create table \`user_user_email_primary\` (\`user_id\` int unsigned not null, \`user_email_id\` int unsigned not null, \`created_at\` datetime(3) not null default utc_timestamp(3), \`updated_at\` datetime(3) not null default utc_timestamp(3), primary key (\`user_id\`)) default character set utf8mb4 engine = InnoDB comment = 'mikro-orm-coaster primary relationship, child column naming the parent: owner_id';`);
    this.addSql(`alter table \`user_user_email_primary\` add index \`user_user_email_primary_user_id_index\`(\`user_id\`);`);
    this.addSql(`alter table \`user_user_email_primary\` add index \`user_user_email_primary_user_email_id_index\`(\`user_email_id\`);`);

    this.addSql(`create table \`follow\` (\`id\` int unsigned not null auto_increment primary key, \`user_id\` int unsigned not null, \`tag_id\` varchar(36) not null) default character set utf8mb4 engine = InnoDB;`);
    this.addSql(`alter table \`follow\` add index \`follow_user_id_index\`(\`user_id\`);`);
    this.addSql(`alter table \`follow\` add index \`follow_tag_id_index\`(\`tag_id\`);`);
    this.addSql(`alter table \`follow\` add unique \`follow_user_id_tag_id_unique\`(\`user_id\`, \`tag_id\`);`);

    this.addSql(`alter table \`user_email\` add constraint \`user_email_owner_id_foreign\` foreign key (\`owner_id\`) references \`user\` (\`id\`) on update cascade on delete cascade;`);

    this.addSql(`alter table \`user_user_email_primary\` add constraint \`user_user_email_primary_user_id_foreign\` foreign key (\`user_id\`) references \`user\` (\`id\`) on update cascade on delete cascade;`);
    this.addSql(`alter table \`user_user_email_primary\` add constraint \`user_user_email_primary_user_email_id_foreign\` foreign key (\`user_email_id\`) references \`user_email\` (\`id\`) on update cascade on delete cascade;`);

    this.addSql(`alter table \`follow\` add constraint \`follow_user_id_foreign\` foreign key (\`user_id\`) references \`user\` (\`id\`) on update cascade;`);
    this.addSql(`alter table \`follow\` add constraint \`follow_tag_id_foreign\` foreign key (\`tag_id\`) references \`tag\` (\`id\`) on update cascade;`);

    this.addSql(`create trigger \`user_user_email_primary_insert\` before insert on \`user_user_email_primary\` for each row begin if exists (select 1 from \`user_email\` where \`id\` = new.\`user_email_id\` and not (\`owner_id\` <=> new.\`user_id\`)) then signal sqlstate '23000' set message_text = 'The target is not affiliated with this parent', mysql_errno = 1452; end if; end;`);
    this.addSql(`create trigger \`user_user_email_primary_update\` before update on \`user_user_email_primary\` for each row begin if exists (select 1 from \`user_email\` where \`id\` = new.\`user_email_id\` and not (\`owner_id\` <=> new.\`user_id\`)) then signal sqlstate '23000' set message_text = 'The target is not affiliated with this parent', mysql_errno = 1452; end if; end;`);
  }

}
