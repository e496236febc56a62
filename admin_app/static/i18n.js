// The pages' two languages: English and Simplified Chinese (zh-CN), the original design's
// language. Plain ES2020, no build step; loaded before dashboard.js on every page.
//
// The language is, in this order: the page's ?lang= (a shared link), the switch's last
// choice (localStorage), the browser's languages (navigator.languages), English. Templates
// carry their English text and name its message with data-i18n (text), or
// data-i18n-attr="placeholder:key;aria-label:key" (attributes); apply() replaces them.
// Numbers, dates and money are formatted with Intl in the page's locale (dashboard.js).
(() => {
  "use strict";

  const STORAGE_KEY = "llm_tracker.lang";
  const LANGS = { en: "English", "zh-CN": "简体中文" };

  const MESSAGES = {
    en: {
      "title.dashboard": "Dashboard",
      "title.usage": "Usage",
      "title.detail": "Usage row",
      "title.login": "Log in",
      "title.forbidden": "Forbidden",
      "nav.dashboard": "Dashboard",
      "nav.usage": "Usage",
      "nav.label": "Pages",
      "who.logged_in": "Logged in as",
      "who.logout": "Log out",
      "who.not_logged_in": "Not logged in",
      "who.login": "Log in",
      "lang.label": "Language",

      "login.username": "Username",
      "login.password": "Password",
      "login.submit": "Log in",
      "login.invalid": "Invalid username or password.",
      "login.empty": "Enter a username and a password.",
      "login.too_many": "Too many failed logins: try again in {n} seconds.",
      "forbidden.h1": "403 · Forbidden",
      "forbidden.admin_required": "admin access required (an active staff or superuser account).",
      "forbidden.intro": "The dashboard is for admins. An admin gives your account admin "
        + "rights by running",
      "forbidden.or": "on the server, or",
      "forbidden.other": "log in as someone else",

      "dash.h1": "Dashboard",
      "dash.h1_user": "Spend of {name}",
      "filters.label": "Filters",
      "filters.period": "Period",
      "period.today": "Today",
      "period.7d": "Last 7 days",
      "period.30d": "Last 30 days",
      "period.this_month": "This month",
      "period.last_month": "Last month",
      "period.all": "All time",
      "period.custom": "Custom",
      "filters.from": "From",
      "filters.to": "To",
      "filters.tz": "Time zone",
      "filters.user": "User",
      "filters.all_users": "All users",
      "filters.granularity": "Granularity",
      "granularity.auto": "Auto",
      "granularity.day": "Hourly",
      "granularity.month": "Daily",
      "granularity.year": "Monthly",
      "filters.apply": "Apply",
      "filters.reset": "Reset",
      "filters.unknown_user": "user #{id}",
      "drill.label": "Drilled down to",
      "drill.user_id": "User",
      "drill.node_name": "Feature",
      "drill.model_exact": "Model",
      "drill.provider": "Provider",
      "drill.source_type": "Source type",
      "drill.remove": "Remove this filter",
      "drill.clear": "Clear all",

      "card.total_calls": "Calls",
      "card.successful_calls": "Successful",
      "card.failed_calls": "Failed",
      "card.total_prompt_tokens": "Prompt tokens",
      "card.total_completion_tokens": "Completion tokens",
      "card.total_cached_tokens": "Cached tokens",
      "card.total_reasoning_tokens": "Reasoning tokens",
      "card.total_tokens": "Total tokens",
      "card.total_cost_usd": "Cost",
      "card.cache_savings_usd": "Cache savings",
      "card.unpriced_calls": "Unpriced calls",
      "card.latency_ms_p50": "Latency p50",
      "card.latency_ms_p95": "Latency p95",
      "summary.label": "Summary",

      "range.all": "All time",
      "range.since": "Since {start}",
      "range.until": "Up to {end}",
      "range.outside": "{n} calls of this period are outside the chart (dated after now?).",

      "chart.h2": "Over time",
      "chart.label": "Time series",
      "chart.show": "Chart",
      "stack.none": "Tokens and cost",
      "stack.model": "Cost by model",
      "stack.user": "Cost by user",
      "stack.node": "Cost by feature",
      "chart.prompt": "Prompt tokens",
      "chart.completion": "Completion tokens",
      "chart.cost": "Cost (USD)",
      "chart.axis_tokens": "tokens",
      "chart.axis_cost": "cost (USD)",
      "chart.tooltip_cost": "Cost: {value}",
      "chart.tooltip_total": "Total: {value}",
      "step.day": "hourly",
      "step.month": "daily",
      "step.year": "monthly",
      "chart.caption": "{step}, {range}",
      "chart.empty": "No calls in this period ({caption}).",
      "chart.failed": "No chart: the data could not be loaded (see the message above).",

      "by_user.h2": "Cost by user",
      "by_node.h2": "Cost by feature (node)",
      "by_model.h2": "By model",
      "col.user": "User",
      "col.node": "Feature",
      "col.model": "Model",
      "col.share": "Share",
      "col.calls": "Calls",
      "col.prompt": "Prompt",
      "col.completion": "Completion",
      "col.cached": "Cached",
      "col.reasoning": "Reasoning",
      "col.tokens": "Tokens",
      "col.total_tokens": "Total tokens",
      "col.cost": "Cost",
      "col.unpriced": "Unpriced",
      "col.p50": "p50",
      "col.p95": "p95",
      "col.rows": "Rows",
      "col.time": "Time",
      "col.total": "Total",
      "col.latency": "Latency",
      "col.status": "Status",
      "sort.hint": "Sort by this column",
      "rows.link": "rows",
      "rows.title": "The usage rows of {name} in this period",
      "drill.title": "Drill the dashboard down to {name}",
      "group.others": "Others ({n})",
      "group.no_user": "(no user)",
      "group.no_node": "(no feature)",
      "group.no_value": "(none)",
      "by_user.empty": "No calls, so no users.",
      "by_node.empty": "No calls, so no features.",
      "by_model.empty": "No calls, so no models.",
      "table.failed": "No table: the data could not be loaded.",
      "scroll.hint": "Scroll sideways for more columns →",

      "status.no_calls_yet": "No LLM calls recorded yet. Rows appear here as soon as your "
        + "application records calls (UsageHandler, call_and_track or record_usage).",
      "status.no_match": "No calls match these filters.",
      "status.no_calls_period": "No calls in this period: choose a longer one, or All time.",
      "status.expired": "Your session has expired. ",
      "status.login_again": "Log in again",
      "status.to_see": " to see this page.",
      "status.network": "Network error: ",
      "status.api": "Error from the API: ",
      "status.unreachable": "could not reach the server ({message})",

      "unpriced": "unpriced",
      "money.exact": "${value} exactly",
      "ms": "{n} ms",

      "usage.h1": "Usage",
      "usage.model": "Model",
      "usage.substring": "substring",
      "usage.status": "Status",
      "usage.any": "Any",
      "usage.succeeded": "Succeeded",
      "usage.failed": "Failed",
      "usage.priced": "Priced",
      "usage.priced_only": "Priced",
      "usage.unpriced_only": "Unpriced",
      "usage.rows": "Rows",
      "usage.export": "Export CSV",
      "usage.label": "Usage rows",
      "chip.model_exact": "Model is exactly",
      "chip.node_name": "Feature is exactly",
      "chip.provider": "Provider is",
      "chip.source_type": "Source type is",
      "chip.clear": "Clear this filter",
      "usage.ok": "ok",
      "usage.row_failed": "failed",
      "usage.newer": "← Newer",
      "usage.older": "Older →",
      "usage.pages": "Pages",
      "usage.page_info": "Page {page} of {pages} · {total} rows",
      "usage.no_rows_match": "No rows match these filters.",
      "usage.no_rows_yet": "No LLM calls recorded yet.",
      "usage.past_end": "Page {page} is past the end ({pages} pages).",
      "usage.failed_load": "No rows: the list could not be loaded (see the message above).",

      "detail.back": "← Usage",
      "detail.h1": "Usage row",
      "detail.metadata": "Metadata",
      "detail.not_in_table": "#{id} (not in the user table)",
      "detail.succeeded": "succeeded",
      "detail.failed": "failed",
      "field.id": "Id",
      "field.created_at": "Time",
      "field.username": "User",
      "field.model": "Model",
      "field.requested_model": "Requested model",
      "field.deployment": "Deployment",
      "field.provider": "Provider",
      "field.node_name": "Feature (node)",
      "field.source_type": "Source type",
      "field.success": "Status",
      "field.error": "Error",
      "field.prompt_tokens": "Prompt tokens",
      "field.completion_tokens": "Completion tokens",
      "field.total_tokens": "Total tokens",
      "field.cached_tokens": "Cached tokens",
      "field.cache_write_tokens": "Cache write tokens",
      "field.reasoning_tokens": "Reasoning tokens",
      "field.cost_usd": "Cost",
      "field.input_cost_usd": "Input cost",
      "field.output_cost_usd": "Output cost",
      "field.cache_savings_usd": "Cache savings",
      "field.price_source": "Price source",
      "field.latency_ms": "Latency",
      "field.ttft_ms": "Time to first token",

      "title.budgets": "Budgets",
      "nav.budgets": "Budgets",
      "budgets.h1": "Budgets",
      "budgets.label": "Budgets",
      "budgets.add": "Add a budget",
      "budgets.add_h2": "New budget",
      "budgets.edit_h2": "Change the budget",
      "budgets.create": "Add budget",
      "budgets.save": "Save changes",
      "budgets.cancel": "Cancel",
      "budgets.edit": "Edit",
      "budgets.delete": "Delete",
      "budgets.confirm_delete": "Delete the budget '{name}'? Its counters and alerts go "
        + "with it.",
      "budgets.empty": "No budgets yet. Add one with the button above, or on the server "
        + "with flask budget add.",
      "budgets.failed": "No budgets: the list could not be loaded (see the message above).",
      "budgets.note": "Each budget's current period; times in {zone}. Projected: the "
        + "period's spend at the burn rate so far.",
      "form.name": "Name",
      "form.scope": "Applies to",
      "form.scope_global": "All calls",
      "form.scope_user": "Users",
      "form.scope_node": "Features (nodes)",
      "form.scope_source_type": "Source types",
      "form.scope_model": "Models",
      "form.user": "User",
      "form.each_user": "Each user separately",
      "form.scope_value": "Value",
      "form.each_value": "empty: each one separately",
      "form.period": "Period",
      "form.period_day": "Day",
      "form.period_week": "Week",
      "form.period_month": "Month",
      "form.tz": "Time zone",
      "form.limit_usd": "Limit (USD)",
      "form.limit_tokens": "Limit (tokens)",
      "form.none": "none",
      "form.action": "When used up",
      "form.action_block": "Block calls",
      "form.action_alert": "Only alert",
      "form.thresholds": "Alert at (fractions of the limit)",
      "form.webhook_url": "Webhook URL (optional)",
      "form.active": "Active",
      "form.expired": "Not saved: your session has expired. ",
      "budget.scope_global": "All calls",
      "budget.each_user": "Each user",
      "budget.each_node": "Each feature",
      "budget.each_source_type": "Each source type",
      "budget.each_model": "Each model",
      "budget.scope_one": "{what} {value}",
      "budget.key_all": "All calls",
      "budget.tokens": "{n} tokens",
      "budget.and": " and ",
      "budget.limit_day": "{limit} a day",
      "budget.limit_week": "{limit} a week",
      "budget.limit_month": "{limit} a month",
      "budget.action_block": "blocks calls when used up",
      "budget.action_alert": "only alerts",
      "budget.alerts_at": "alerts at {list}",
      "budget.no_alerts": "no alerts",
      "budget.webhook": "webhook",
      "budget.no_keys": "Nothing spent in this period yet.",
      "budget.meter": "{pct} of the limit spent",
      "budget.of": "{pct} of {limit}",
      "budget.projected_tick": "Projected at the current burn rate",
      "state.ok": "OK",
      "state.warning": "Warning",
      "state.exceeded": "Exceeded",
      "state.inactive": "Inactive",
      "unit.usd": "Cost",
      "unit.tokens": "Tokens",
      "fig.spent": "Spent",
      "fig.reserved": "Reserved",
      "fig.remaining": "Remaining",
      "fig.projected": "Projected",
      "fig.resets_at": "Resets at",
      "fig.blocked_calls": "Blocked calls",
      "banner.label": "Budget alerts:",
      "banner.scope": " ({what} {value})",
      "banner.scope_user": "user",
      "banner.scope_node": "feature",
      "banner.scope_source_type": "source type",
      "banner.scope_model": "model",
      "banner.period_day": "daily",
      "banner.period_week": "weekly",
      "banner.period_month": "monthly",
      "banner.threshold": "Budget '{name}'{scope} reached {pct} of its {period} limit.",
      "banner.blocked": "Budget '{name}'{scope} is used up and blocks calls.",
      "banner.more": "{n} more…",
    },

    "zh-CN": {
      "title.dashboard": "仪表盘",
      "title.usage": "调用记录",
      "title.detail": "调用详情",
      "title.login": "登录",
      "title.forbidden": "无权访问",
      "nav.dashboard": "仪表盘",
      "nav.usage": "调用记录",
      "nav.label": "页面",
      "who.logged_in": "已登录",
      "who.logout": "退出",
      "who.not_logged_in": "未登录",
      "who.login": "登录",
      "lang.label": "语言",

      "login.username": "用户名",
      "login.password": "密码",
      "login.submit": "登录",
      "login.invalid": "用户名或密码错误。",
      "login.empty": "请输入用户名和密码。",
      "login.too_many": "登录失败次数过多：请 {n} 秒后再试。",
      "forbidden.h1": "403 · 无权访问",
      "forbidden.admin_required": "需要管理员权限（处于启用状态的 staff 或 superuser 账号）。",
      "forbidden.intro": "仪表盘仅供管理员使用。管理员可在服务器上运行",
      "forbidden.or": "为你的账号授予管理员权限，或者",
      "forbidden.other": "换一个账号登录",

      "dash.h1": "仪表盘",
      "dash.h1_user": "{name} 的花费",
      "filters.label": "筛选",
      "filters.period": "时间段",
      "period.today": "今天",
      "period.7d": "最近 7 天",
      "period.30d": "最近 30 天",
      "period.this_month": "本月",
      "period.last_month": "上月",
      "period.all": "全部时间",
      "period.custom": "自定义",
      "filters.from": "开始日期",
      "filters.to": "结束日期",
      "filters.tz": "时区",
      "filters.user": "用户",
      "filters.all_users": "全部用户",
      "filters.granularity": "粒度",
      "granularity.auto": "自动",
      "granularity.day": "按小时",
      "granularity.month": "按天",
      "granularity.year": "按月",
      "filters.apply": "应用",
      "filters.reset": "重置",
      "filters.unknown_user": "用户 #{id}",
      "drill.label": "已下钻到",
      "drill.user_id": "用户",
      "drill.node_name": "功能",
      "drill.model_exact": "模型",
      "drill.provider": "服务商",
      "drill.source_type": "来源类型",
      "drill.remove": "移除此筛选",
      "drill.clear": "全部清除",

      "card.total_calls": "调用次数",
      "card.successful_calls": "成功",
      "card.failed_calls": "失败",
      "card.total_prompt_tokens": "输入 token",
      "card.total_completion_tokens": "输出 token",
      "card.total_cached_tokens": "缓存 token",
      "card.total_reasoning_tokens": "推理 token",
      "card.total_tokens": "总 token",
      "card.total_cost_usd": "费用",
      "card.cache_savings_usd": "缓存节省",
      "card.unpriced_calls": "未定价调用",
      "card.latency_ms_p50": "延迟 p50",
      "card.latency_ms_p95": "延迟 p95",
      "summary.label": "汇总",

      "range.all": "全部时间",
      "range.since": "自 {start} 起",
      "range.until": "截至 {end}",
      "range.outside": "本时间段有 {n} 次调用不在图表范围内（时间晚于现在？）。",

      "chart.h2": "趋势",
      "chart.label": "时间序列",
      "chart.show": "图表",
      "stack.none": "token 与费用",
      "stack.model": "按模型的费用",
      "stack.user": "按用户的费用",
      "stack.node": "按功能的费用",
      "chart.prompt": "输入 token",
      "chart.completion": "输出 token",
      "chart.cost": "费用（美元）",
      "chart.axis_tokens": "token",
      "chart.axis_cost": "费用（美元）",
      "chart.tooltip_cost": "费用：{value}",
      "chart.tooltip_total": "合计：{value}",
      "step.day": "按小时",
      "step.month": "按天",
      "step.year": "按月",
      "chart.caption": "{step}，{range}",
      "chart.empty": "此时间段内没有调用（{caption}）。",
      "chart.failed": "无法显示图表：数据加载失败（见上方消息）。",

      "by_user.h2": "按用户的费用",
      "by_node.h2": "按功能（节点）的费用",
      "by_model.h2": "按模型",
      "col.user": "用户",
      "col.node": "功能",
      "col.model": "模型",
      "col.share": "占比",
      "col.calls": "调用",
      "col.prompt": "输入",
      "col.completion": "输出",
      "col.cached": "缓存",
      "col.reasoning": "推理",
      "col.tokens": "token",
      "col.total_tokens": "总 token",
      "col.cost": "费用",
      "col.unpriced": "未定价",
      "col.p50": "p50",
      "col.p95": "p95",
      "col.rows": "记录",
      "col.time": "时间",
      "col.total": "合计",
      "col.latency": "延迟",
      "col.status": "状态",
      "sort.hint": "按此列排序",
      "rows.link": "记录",
      "rows.title": "{name} 在此时间段的调用记录",
      "drill.title": "将仪表盘下钻到 {name}",
      "group.others": "其他（{n} 个）",
      "group.no_user": "（无用户）",
      "group.no_node": "（无功能）",
      "group.no_value": "（无）",
      "by_user.empty": "没有调用，因此没有用户。",
      "by_node.empty": "没有调用，因此没有功能。",
      "by_model.empty": "没有调用，因此没有模型。",
      "table.failed": "无法显示表格：数据加载失败。",
      "scroll.hint": "左右滑动查看更多列 →",

      "status.no_calls_yet": "尚未记录任何 LLM 调用。应用记录调用（UsageHandler、"
        + "call_and_track 或 record_usage）后，数据会立即显示在这里。",
      "status.no_match": "没有符合这些筛选条件的调用。",
      "status.no_calls_period": "此时间段内没有调用：请选择更长的时间段，或“全部时间”。",
      "status.expired": "会话已过期。",
      "status.login_again": "重新登录",
      "status.to_see": "后即可查看此页面。",
      "status.network": "网络错误：",
      "status.api": "API 返回错误：",
      "status.unreachable": "无法连接服务器（{message}）",

      "unpriced": "未定价",
      "money.exact": "精确值：{value} 美元",
      "ms": "{n} 毫秒",

      "usage.h1": "调用记录",
      "usage.model": "模型",
      "usage.substring": "包含的文字",
      "usage.status": "状态",
      "usage.any": "全部",
      "usage.succeeded": "成功",
      "usage.failed": "失败",
      "usage.priced": "定价",
      "usage.priced_only": "已定价",
      "usage.unpriced_only": "未定价",
      "usage.rows": "每页行数",
      "usage.export": "导出 CSV",
      "usage.label": "调用记录",
      "chip.model_exact": "模型精确为",
      "chip.node_name": "功能精确为",
      "chip.provider": "服务商为",
      "chip.source_type": "来源类型为",
      "chip.clear": "清除此筛选",
      "usage.ok": "成功",
      "usage.row_failed": "失败",
      "usage.newer": "← 较新",
      "usage.older": "较旧 →",
      "usage.pages": "翻页",
      "usage.page_info": "第 {page} / {pages} 页 · 共 {total} 行",
      "usage.no_rows_match": "没有符合这些筛选条件的记录。",
      "usage.no_rows_yet": "尚未记录任何 LLM 调用。",
      "usage.past_end": "第 {page} 页超出了末尾（共 {pages} 页）。",
      "usage.failed_load": "无法显示记录：列表加载失败（见上方消息）。",

      "detail.back": "← 调用记录",
      "detail.h1": "调用详情",
      "detail.metadata": "元数据",
      "detail.not_in_table": "#{id}（不在用户表中）",
      "detail.succeeded": "成功",
      "detail.failed": "失败",
      "field.id": "ID",
      "field.created_at": "时间",
      "field.username": "用户",
      "field.model": "模型",
      "field.requested_model": "请求的模型",
      "field.deployment": "部署",
      "field.provider": "服务商",
      "field.node_name": "功能（节点）",
      "field.source_type": "来源类型",
      "field.success": "状态",
      "field.error": "错误",
      "field.prompt_tokens": "输入 token",
      "field.completion_tokens": "输出 token",
      "field.total_tokens": "总 token",
      "field.cached_tokens": "缓存 token",
      "field.cache_write_tokens": "缓存写入 token",
      "field.reasoning_tokens": "推理 token",
      "field.cost_usd": "费用",
      "field.input_cost_usd": "输入费用",
      "field.output_cost_usd": "输出费用",
      "field.cache_savings_usd": "缓存节省",
      "field.price_source": "价格来源",
      "field.latency_ms": "延迟",
      "field.ttft_ms": "首 token 时间",

      "title.budgets": "预算",
      "nav.budgets": "预算",
      "budgets.h1": "预算",
      "budgets.label": "预算",
      "budgets.add": "添加预算",
      "budgets.add_h2": "新预算",
      "budgets.edit_h2": "修改预算",
      "budgets.create": "添加预算",
      "budgets.save": "保存修改",
      "budgets.cancel": "取消",
      "budgets.edit": "编辑",
      "budgets.delete": "删除",
      "budgets.confirm_delete": "删除预算“{name}”？它的计数和告警也会一并删除。",
      "budgets.empty": "尚无预算。请用上方的按钮添加，或在服务器上运行 flask budget add。",
      "budgets.failed": "无法显示预算：列表加载失败（见上方消息）。",
      "budgets.note": "各预算的当前周期；时间按 {zone} 显示。预计：按目前的消耗速度，本周期的花费。",
      "form.name": "名称",
      "form.scope": "适用于",
      "form.scope_global": "全部调用",
      "form.scope_user": "用户",
      "form.scope_node": "功能（节点）",
      "form.scope_source_type": "来源类型",
      "form.scope_model": "模型",
      "form.user": "用户",
      "form.each_user": "每个用户分别计算",
      "form.scope_value": "值",
      "form.each_value": "留空：每个值分别计算",
      "form.period": "周期",
      "form.period_day": "日",
      "form.period_week": "周",
      "form.period_month": "月",
      "form.tz": "时区",
      "form.limit_usd": "限额（美元）",
      "form.limit_tokens": "限额（token）",
      "form.none": "无",
      "form.action": "用完时",
      "form.action_block": "拦截调用",
      "form.action_alert": "仅告警",
      "form.thresholds": "告警阈值（限额的比例）",
      "form.webhook_url": "Webhook URL（可选）",
      "form.active": "启用",
      "form.expired": "未保存：会话已过期。",
      "budget.scope_global": "全部调用",
      "budget.each_user": "每个用户",
      "budget.each_node": "每个功能",
      "budget.each_source_type": "每个来源类型",
      "budget.each_model": "每个模型",
      "budget.scope_one": "{what} {value}",
      "budget.key_all": "全部调用",
      "budget.tokens": "{n} token",
      "budget.and": " 和 ",
      "budget.limit_day": "每日 {limit}",
      "budget.limit_week": "每周 {limit}",
      "budget.limit_month": "每月 {limit}",
      "budget.action_block": "用完后拦截调用",
      "budget.action_alert": "仅告警",
      "budget.alerts_at": "在 {list} 时告警",
      "budget.no_alerts": "不告警",
      "budget.webhook": "webhook",
      "budget.no_keys": "本周期尚无花费。",
      "budget.meter": "已用限额的 {pct}",
      "budget.of": "{limit} 的 {pct}",
      "budget.projected_tick": "按目前消耗速度的预计值",
      "state.ok": "正常",
      "state.warning": "预警",
      "state.exceeded": "已超限",
      "state.inactive": "已停用",
      "unit.usd": "费用",
      "unit.tokens": "token",
      "fig.spent": "已用",
      "fig.reserved": "预留",
      "fig.remaining": "剩余",
      "fig.projected": "预计",
      "fig.resets_at": "重置时间",
      "fig.blocked_calls": "被拦截的调用",
      "banner.label": "预算告警：",
      "banner.scope": "（{what} {value}）",
      "banner.scope_user": "用户",
      "banner.scope_node": "功能",
      "banner.scope_source_type": "来源类型",
      "banner.scope_model": "模型",
      "banner.period_day": "每日",
      "banner.period_week": "每周",
      "banner.period_month": "每月",
      "banner.threshold": "预算“{name}”{scope}已达到{period}限额的 {pct}。",
      "banner.blocked": "预算“{name}”{scope}已用完，调用将被拦截。",
      "banner.more": "还有 {n} 条…",
    },
  };

  // A language tag to one of ours: every Chinese tag reads Simplified Chinese (the only
  // Chinese we have), every English one English; anything else is not ours.
  function match(tag) {
    if (typeof tag !== "string") return null;
    const lower = tag.trim().toLowerCase();
    if (lower === "zh" || lower.startsWith("zh-")) return "zh-CN";
    if (lower === "en" || lower.startsWith("en-")) return "en";
    return null;
  }

  function browserLanguages() {
    const list = navigator.languages && navigator.languages.length
      ? navigator.languages : [navigator.language];
    return list.filter(Boolean);
  }

  function stored() {
    try {
      return localStorage.getItem(STORAGE_KEY);
    } catch (err) {
      return null; // storage disabled: the browser's languages decide
    }
  }

  function store(lang) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch (err) {
      // storage disabled: the choice lasts for this page only
    }
  }

  function pick() {
    const fromQuery = match(new URLSearchParams(location.search).get("lang"));
    if (fromQuery) {
      store(fromQuery); // a shared ?lang= link keeps its language on the next pages
      return fromQuery;
    }
    const chosen = match(stored());
    if (chosen) return chosen;
    for (const tag of browserLanguages()) {
      const found = match(tag);
      if (found) return found;
    }
    return "en";
  }

  // The locale numbers and dates are formatted in: the browser's own English (en-GB dates
  // for a British browser) when it speaks English, else the language itself.
  function localeFor(lang) {
    if (lang === "zh-CN") return "zh-CN";
    const english = browserLanguages().find((tag) => match(tag) === "en");
    try {
      return english ? Intl.getCanonicalLocales(english)[0] : "en-US";
    } catch (err) {
      return "en-US";
    }
  }

  const state = { lang: "en", locale: "en-US" };
  const listeners = [];

  function t(key, vars = {}) {
    const text = MESSAGES[state.lang][key] ?? MESSAGES.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (all, name) => (name in vars ? String(vars[name]) : all));
  }

  // Messages the server renders in English (the login form's errors), by their English text.
  const SERVER_TEXT = [
    [/^Invalid username or password\.$/, () => t("login.invalid")],
    [/^Enter a username and a password\.$/, () => t("login.empty")],
    [/^Too many failed logins: try again in (\d+) seconds\.$/,
      (m) => t("login.too_many", { n: m[1] })],
    [/^admin access required \(an active staff or superuser account\)\.$/,
      () => t("forbidden.admin_required")],
  ];

  function apply(root = document) {
    for (const node of root.querySelectorAll("[data-i18n]")) {
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of root.querySelectorAll("[data-i18n-attr]")) {
      for (const pair of node.dataset.i18nAttr.split(";")) {
        const [attr, key] = pair.split(":").map((s) => s.trim());
        if (attr && key) node.setAttribute(attr, t(key));
      }
    }
    for (const node of root.querySelectorAll("[data-i18n-server]")) {
      if (!node.dataset.i18nServer) node.dataset.i18nServer = node.textContent;
      const english = node.dataset.i18nServer;
      let text = english;
      for (const [pattern, translate] of SERVER_TEXT) {
        const m = pattern.exec(english);
        if (m) text = translate(m);
      }
      node.textContent = text;
    }
    const titleKey = document.body.dataset.titleKey;
    if (titleKey) document.title = `${t(titleKey)} · llm_tracker`;
    document.documentElement.lang = state.lang;
    for (const select of document.querySelectorAll("select[data-lang-switch]")) {
      select.value = state.lang;
    }
  }

  function setLang(lang, { remember = true } = {}) {
    const found = match(lang) || "en";
    if (remember) store(found);
    // A ?lang= in the address would pick the old language again on reload.
    const params = new URLSearchParams(location.search);
    if (params.has("lang")) {
      params.set("lang", found);
      history.replaceState(history.state, "", `${location.pathname}?${params}${location.hash}`);
    }
    if (found === state.lang) return;
    state.lang = found;
    state.locale = localeFor(found);
    apply();
    for (const listener of listeners) listener(found);
  }

  state.lang = pick();
  state.locale = localeFor(state.lang);

  function setUpSwitches() {
    for (const select of document.querySelectorAll("select[data-lang-switch]")) {
      select.replaceChildren(...Object.entries(LANGS).map(([value, name]) => {
        const option = document.createElement("option");
        option.value = value;
        option.textContent = name;
        option.lang = value;
        return option;
      }));
      select.value = state.lang;
      select.addEventListener("change", () => setLang(select.value));
    }
  }

  setUpSwitches();
  apply();

  window.llmI18n = {
    get lang() { return state.lang; },
    get locale() { return state.locale; },
    t,
    apply,
    setLang,
    onChange: (listener) => listeners.push(listener),
    messages: MESSAGES,
    match,
  };
})();
